package etcd_test

import (
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

func TestBackendFactsThroughOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.RequestTimeout = 300 * time.Millisecond
	b := newBackend(t, cfg)
	if f := b.BackendFacts(); f.HasLease || f.RetryAttempts != 0 {
		t.Errorf("facts before Register = %+v; want no lease, no attempts", f)
	}
	states := recordStates(t, b)
	register(t, b, instance("payments", "p-1"))

	// The first keep-alive goes a third of the TTL after the grant.
	testwait.Until(t, waitFor, "a keep-alive answered", func() bool { return b.BackendFacts().KeepAliveRTT > 0 })
	f := b.BackendFacts()
	if !f.Connected || !f.HasLease || f.RetryAttempts != 0 {
		t.Errorf("facts while registered = %+v; want connected, a lease, no attempts", f)
	}
	if f.LeaseRemaining <= 0 || f.LeaseRemaining > cfg.TTL {
		t.Errorf("LeaseRemaining = %v; want in (0, %v]", f.LeaseRemaining, cfg.TTL)
	}
	if f.KeepAliveRTT > time.Second {
		t.Errorf("KeepAliveRTT = %v on loopback; want well under a second", f.KeepAliveRTT)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	states.waitState(t, discovery.StateRetrying, cfg.TTL+waitFor)
	testwait.Until(t, waitFor, "disconnected, the lease run out, two attempts failed", func() bool {
		f := b.BackendFacts()
		return !f.Connected && f.HasLease && f.LeaseRemaining == 0 && f.RetryAttempts >= 2
	})
	last := states.statuses()[len(states.statuses())-1]
	if !errors.Is(last.Err, discovery.ErrUnavailable) {
		t.Errorf("retrying cause %v does not wrap discovery.ErrUnavailable", last.Err)
	}
	failed := b.BackendFacts().RetryAttempts

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	states.waitState(t, discovery.StateRegistered, waitFor)
	// A lease that etcd kept through the outage has an unknown remaining
	// TTL until its first keep-alive, which goes at once.
	testwait.Until(t, waitFor, "a keep-alive answered after the outage", func() bool { return b.BackendFacts().LeaseRemaining > 0 })
	f = b.BackendFacts()
	if !f.Connected || !f.HasLease || f.RetryAttempts < failed {
		t.Errorf("facts after recovery = %+v; want connected, a live lease, at least %d attempts", f, failed)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if f := b.BackendFacts(); f.HasLease {
		t.Errorf("facts after Close = %+v; want no lease", f)
	}
}
