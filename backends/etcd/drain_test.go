package etcd_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/draintest"
)

// TestCloseDrainsBeforeRevoking: with Config.DrainOnClose, Close
// publishes the instance draining, which a watcher on another Backend sees
// before the lease's revocation removes it, and waits DrainOnClose.
func TestCloseDrainsBeforeRevoking(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	other := newBackend(t, testConfig(t, srv.Endpoints()))
	cfg := testConfig(t, srv.Endpoints())
	cfg.DrainOnClose = 300 * time.Millisecond
	b, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := instance("payments", "p-1")
	register(t, b, in)
	draintest.CloseDrains(t, draintest.Watch(t, other, in), in, cfg.DrainOnClose, b.Close)
}

// TestCloseDrainBoundedWhenEtcdUnreachable: etcd blackholed, Close with
// DrainOnClose returns within DrainOnClose plus the revocation's
// RequestTimeout (and a margin for a busy machine), reporting the failure.
func TestCloseDrainBoundedWhenEtcdUnreachable(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.DrainOnClose = 500 * time.Millisecond
	b, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("payments", "p-1"))
	proxy.Blackhole()
	defer proxy.Unblackhole()
	if err := draintest.CloseWithin(t, cfg.DrainOnClose+cfg.RequestTimeout+5*time.Second, b.Close); err == nil {
		t.Error("Close with etcd unreachable returned nil; want the failed drain and revocation")
	}
}

func TestDrainOnCloseNegativeIsRejected(t *testing.T) {
	t.Parallel()
	cfg := etcd.Config{Endpoints: []string{"127.0.0.1:1"}, DrainOnClose: -time.Second}
	if _, err := etcd.New(cfg); !errors.Is(err, etcd.ErrInvalidConfig) || !strings.Contains(err.Error(), "DrainOnClose") {
		t.Errorf("New(DrainOnClose -1s) = %v; want ErrInvalidConfig naming DrainOnClose", err)
	}
}
