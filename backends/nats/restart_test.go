package nats_test

import (
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// clusterBackend starts a 3-node cluster and a Backend on every node,
// with the bucket replicated on the three and retry.
func clusterBackend(t *testing.T, policy retry.Policy) (*natstest.Cluster, *nats.Backend) {
	t.Helper()
	c := natstest.StartCluster(t, 3)
	cfg := testConfig(t, c.URLs()[0], "roster")
	cfg.Endpoints = c.URLs()
	cfg.Replicas = 3
	cfg.Retry = policy
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, p1.Key(), discovery.StateRegistered, 5*time.Second)
	return c, b
}

// usable waits until JetStream has a meta leader and the bucket's stream
// a leader, polled every 10 ms, and returns when it first saw them.
func usable(t *testing.T, c *natstest.Cluster, within time.Duration) time.Time {
	t.Helper()
	testwait.Until(t, within, "JetStream has a meta leader and KV_roster a leader", func() bool {
		return c.Leader() >= 0 && c.StreamLeader("KV_roster") >= 0
	})
	return time.Now()
}

// After the whole cluster was stopped long enough for the keeper's retry
// delay to grow (here to several seconds), the Backend is registered
// again soon after the cluster is usable, not after that delay: the
// nodes take connections seconds before JetStream answers and drop the
// requests made meanwhile, so the attempt the reconnection starts fails;
// the election of the stream's leader (the server's advisory) ends the
// wait, and ends an opening of the bucket left unanswered. Before, the
// keeper waited out the delay the outage reached (6 to 8 s here; 24 to
// 30 s with the default policy, the p99 of 29 s that roster bench
// measured).
func TestWholeClusterRestartRegistersSoonAfterUsable(t *testing.T) {
	t.Parallel()
	policy := retry.Policy{Base: 100 * time.Millisecond, Max: 8 * time.Second, Jitter: 0.2}
	c, b := clusterBackend(t, policy)
	for _, n := range c.Nodes() {
		n.Stop()
	}
	// Stopped until the keeper's delay has grown past what the check
	// below allows.
	testwait.Until(t, 30*time.Second, "the keeper's retry delay reaches 3 s", func() bool {
		st, err := b.Status(p1.Service, p1.ID)
		return err == nil && st.State == discovery.StateRetrying && st.RetryIn >= 3*time.Second
	})
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes()))
	for i, n := range c.Nodes() {
		wg.Go(func() { errs[i] = n.Restart() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("restart node %d: %v", i, err)
		}
	}
	at := usable(t, c, 30*time.Second)
	waitState(t, b, p1.Key(), discovery.StateRegistered, 30*time.Second)
	took := time.Since(at)
	t.Logf("registered again %v after the cluster was usable", took)
	// Well below the 6.4 s the shortest grown delay (8 s less 20%)
	// would take, with room for a busy machine.
	if took > 3*time.Second {
		t.Errorf("registered again %v after the cluster was usable; want within 3 s", took)
	}
	kv := rawKV(t, c.URLs()[0], "roster")
	if ok, err := present(t.Context(), kv, p1Key, p1); !ok || err != nil {
		t.Errorf("the key after the restart: present %v, %v; want present", ok, err)
	}
}
