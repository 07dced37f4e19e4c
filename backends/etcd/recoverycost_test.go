package etcd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// Not parallel: it reads etcd's global metrics. A grant attempt that
// waits for the connection during an outage must not spend its timeout
// waiting: when the connection comes back late in the attempt, over a
// link whose round trip is longer than what the attempt has left, the
// grant still gets its whole RequestTimeout, and one LeaseGrant recovers
// (issue #21: in a loaded fleet restart, 224 grants of 200 processes
// timed out this way and were sent again).
//
// The link is 2 x 400 ms each way once accepted, so the connection is
// usable about 0.8-1.0 s after Accept and a grant takes about 0.8 s more;
// Accept comes 0.4 s into an attempt of 2 s, so the attempt has about
// 0.6-0.8 s left when the connection is usable: too little, if its
// timeout ran from its start.
func TestGrantTimeoutRunsFromTheConnectionsReturn(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.RequestTimeout = 2 * time.Second
	cfg.ReconnectDelay = 100 * time.Millisecond
	// A fixed, short delay between attempts, so the test knows when the
	// next attempt starts.
	cfg.Retry = retry.Policy{Base: 50 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: 0.01}
	b := newBackend(t, cfg)
	register(t, b, instance("payments", "p-1"))
	lease := b.Lease()

	sub := b.SubscribeStatus()
	t.Cleanup(sub.Stop)
	proxy.Reject()
	testwait.Until(t, cfg.TTL+waitFor, "etcd expires the lease", func() bool {
		resp, err := cli.TimeToLive(context.Background(), lease)
		return err == nil && resp.TTL == -1
	})
	proxy.SetLatency(400 * time.Millisecond)
	// The next failed attempt to grant the lease again: the one after it
	// starts 50 ms later.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		st, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no failed grant reported: %v", err)
		}
		if st.State == discovery.StateRetrying && st.Err != nil && strings.Contains(st.Err.Error(), "grant lease") {
			break
		}
	}
	time.Sleep(50*time.Millisecond + 400*time.Millisecond) // into the next attempt; see above
	before := requestCounts(t, "LeaseGrant", "Txn")
	proxy.Accept()
	testwait.Until(t, 2*waitFor, "the instance is registered again", func() bool {
		return stateOf(b, "payments", "p-1") == discovery.StateRegistered
	})
	after := requestCounts(t, "LeaseGrant", "Txn")
	if got := after["LeaseGrant"] - before["LeaseGrant"]; got != 1 {
		t.Errorf("%v LeaseGrant requests to recover; want 1 (a grant whose timeout ran out while etcd answered is sent again)", got)
	}
	if got := after["Txn"] - before["Txn"]; got != 1 {
		t.Errorf("%v Txn requests to recover; want 1", got)
	}
}
