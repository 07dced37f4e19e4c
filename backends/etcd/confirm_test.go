package etcd_test

import (
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

// TestRegisteredOnlyWhileConfirmed cuts a registered instance off etcd and
// checks that its status leaves registered once etcd has not confirmed its
// lease for a TTL, however long the request that tries to grant the lease
// again may wait (here a RequestTimeout longer than the TTL), and stays
// off registered until the registry answers again.
//
// Before, the status left registered only when that request failed: a
// RequestTimeout after the keep-alive gave up (here 5 s after a 2 s TTL),
// and never if etcd came back while it waited, so a process said
// registered through an outage longer than its TTL (issue #21).
func TestRegisteredOnlyWhileConfirmed(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.RequestTimeout = 5 * time.Second // longer than the TTL: it must not delay the status
	b := newBackend(t, cfg)
	states := recordStates(t, b)
	register(t, b, instance("payments", "p-1"))
	states.waitState(t, discovery.StateRegistered, waitFor)

	// From here on, etcd confirms nothing: the last confirmation went out
	// before the cut.
	cut := time.Now()
	proxy.Blackhole()
	left := states.waitState(t, discovery.StateRetrying, cfg.TTL+cfg.RequestTimeout+waitFor)
	t.Logf("left registered %v after the cut (TTL %v)", left.Sub(cut), cfg.TTL)
	// A generous margin for a busy machine, still well short of
	// TTL + RequestTimeout.
	if bound := cfg.TTL + 1500*time.Millisecond; left.Sub(cut) > bound {
		t.Errorf("status left registered %v after the cut; want within %v (TTL %v)", left.Sub(cut), bound, cfg.TTL)
	}
	st := states.statuses()
	if last := st[len(st)-1]; last.Err == nil {
		t.Errorf("retrying status %v has no cause", last)
	}

	heal := time.Now()
	proxy.Unblackhole()
	states.waitState(t, discovery.StateRegistered, waitFor)
	// Cut off, no status may have said registered.
	for _, s := range states.statuses() {
		if s.State == discovery.StateRegistered && s.Since.After(cut) && s.Since.Before(heal) {
			t.Errorf("status %v reported while etcd was cut off", s)
		}
	}
}
