package nats_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/draintest"
)

// TestCloseDrainsBeforeRemoving: with Config.DrainOnClose, Close
// publishes the instance draining, which a watcher on another Backend sees
// before the purge removes it, and waits DrainOnClose.
func TestCloseDrainsBeforeRemoving(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	other := newBackend(t, testConfig(t, srv.URL(), "roster"))
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.DrainOnClose = 300 * time.Millisecond
	b, err := nats.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	draintest.CloseDrains(t, draintest.Watch(t, other, p1), p1, cfg.DrainOnClose, b.Close)
}

// TestCloseDrainBoundedWhenNATSUnreachable: NATS blackholed, Close with
// DrainOnClose returns within DrainOnClose plus its RequestTimeout-bounded
// removals (and a margin for a busy machine), reporting the failure.
func TestCloseDrainBoundedWhenNATSUnreachable(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.DrainOnClose = 500 * time.Millisecond
	cfg.RequestTimeout = time.Second
	b, err := nats.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole()
	defer proxy.Unblackhole()
	if err := draintest.CloseWithin(t, cfg.DrainOnClose+2*cfg.RequestTimeout+5*time.Second, b.Close); err == nil {
		t.Error("Close with NATS unreachable returned nil; want the failed drain and removal")
	}
}

func TestDrainOnCloseNegativeIsRejected(t *testing.T) {
	t.Parallel()
	cfg := nats.Config{Endpoints: []string{"nats://127.0.0.1:1"}, DrainOnClose: -time.Second}
	if _, err := nats.New(cfg); !errors.Is(err, nats.ErrInvalidConfig) || !strings.Contains(err.Error(), "DrainOnClose") {
		t.Errorf("New(DrainOnClose -1s) = %v; want ErrInvalidConfig naming DrainOnClose", err)
	}
}
