package nats_test

import (
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// The facts the metrics export: connected, failed attempts, and the time
// before the first key expires without a renewal, through an outage
// longer than the TTL.
func TestBackendFactsThroughOutage(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.RequestTimeout = 300 * time.Millisecond
	b := newBackend(t, cfg)
	if f := b.BackendFacts(); !f.Connected || f.HasLease || f.RetryAttempts != 0 {
		t.Errorf("facts before Register = %+v; want connected, no keys, no attempts", f)
	}
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	f := b.BackendFacts()
	if !f.Connected || !f.HasLease || f.RetryAttempts != 0 {
		t.Errorf("facts while registered = %+v; want connected, a key, no attempts", f)
	}
	if f.LeaseRemaining <= cfg.TTL/2 || f.LeaseRemaining > cfg.TTL {
		t.Errorf("LeaseRemaining = %v just after Register; want about the TTL, %v", f.LeaseRemaining, cfg.TTL)
	}
	if f.KeepAliveRTT <= 0 || f.KeepAliveRTT > time.Second {
		t.Errorf("KeepAliveRTT = %v on loopback; want a round trip well under a second", f.KeepAliveRTT)
	}
	// Renewals keep it from running down.
	time.Sleep(cfg.TTL / 2) // real time: renewals go every TTL/3
	if f := b.BackendFacts(); f.LeaseRemaining <= cfg.TTL/3 {
		t.Errorf("LeaseRemaining = %v after half a TTL of renewals; want more than %v", f.LeaseRemaining, cfg.TTL/3)
	}

	srv.Stop()
	testwait.Until(t, cfg.TTL+5*time.Second, "disconnected, the key run out, two attempts failed", func() bool {
		f := b.BackendFacts()
		return !f.Connected && f.HasLease && f.LeaseRemaining == 0 && f.RetryAttempts >= 2
	})
	st, err := b.Status(p1.Service, p1.ID)
	if err != nil || st.State != discovery.StateRetrying || !errors.Is(st.Err, discovery.ErrUnavailable) {
		t.Errorf("Status during the outage = %v, %v; want retrying with a cause wrapping ErrUnavailable", st, err)
	}
	failed := b.BackendFacts().RetryAttempts

	natstest.Restart(t, srv)
	waitState(t, b, p1.Key(), discovery.StateRegistered, 5*time.Second)
	f = b.BackendFacts()
	if !f.Connected || !f.HasLease || f.LeaseRemaining <= cfg.TTL/2 || f.RetryAttempts < failed {
		t.Errorf("facts after recovery = %+v; want connected, a fresh key, at least %d attempts", f, failed)
	}

	if err := b.Deregister(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	if f := b.BackendFacts(); f.HasLease {
		t.Errorf("facts after Deregister = %+v; want no keys", f)
	}
}
