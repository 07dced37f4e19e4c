package etcd_test

import (
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// When a keep-alive request goes out before the answer to the previous one
// (a round trip longer than a third of the TTL), the answer must be
// counted from the request it answers: the lease's expiry and
// LeaseRemaining must never be later than etcd's. etcd extends the lease
// on receiving a request, at least the link's one-way latency after it
// was sent, so at any moment the lease has at most TTL minus that latency
// left ("found by reading" item of issue #20).
func TestLeaseRemainingIsNeverLate(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.TTL = 6 * time.Second
	cfg.RequestTimeout = 5 * time.Second // Close's revoke crosses the slow link too
	// Each way: a round trip of 2.2 s, more than TTL/3, so that a request
	// goes out before the previous one is answered; well under TTL/2, as
	// the proxy delays each chunk after the one before it, so that a round
	// trip can take twice as long.
	const latency = 1100 * time.Millisecond
	b := newBackend(t, cfg)
	register(t, b, instance("payments", "p-1"))
	proxy.SetLatency(latency)
	t.Cleanup(func() { proxy.SetLatency(0) })

	const slack = 200 * time.Millisecond
	bound := cfg.TTL - latency + slack
	// Watched from the first renewal after the latency is on: the grant's
	// own expiry was counted before it.
	var worst time.Duration
	renewals := 0
	last := b.BackendFacts().LeaseRemaining
	end := time.Now().Add(2 * cfg.TTL) // answers to overlapping requests
	for time.Now().Before(end) {
		r := b.BackendFacts().LeaseRemaining
		if r > last {
			renewals++
			t.Logf("renewal: remaining %v (was %v)", r, last)
		}
		if renewals > 0 && r > worst {
			worst = r
		}
		last = r
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d renewals seen; LeaseRemaining at most %v", renewals, worst)
	if renewals < 1 {
		t.Fatalf("no renewal in %v", 2*cfg.TTL)
	}
	if worst > bound {
		t.Errorf("LeaseRemaining reached %v with a one-way latency of %v; want at most TTL-latency = %v (+%v)",
			worst, latency, cfg.TTL-latency, slack)
	}
}
