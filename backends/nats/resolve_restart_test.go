package nats_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// A Resolve made at once after a whole-cluster restart, by a fresh
// Backend, answers within a few seconds of the cluster being usable (a
// meta leader and the bucket stream's leader): a JetStream API request
// sent while the stream's leader (or its consumer's) was still settling
// may go unanswered, and Resolve must not wait out its caller's context
// on it (roster bench --restart: 4 of 11 runs had a read unanswered for
// 30 s).
func TestResolveAfterWholeClusterRestart(t *testing.T) {
	t.Parallel()
	c, _ := clusterBackend(t, fastRetry, nil)
	const rounds = 3
	for round := range rounds {
		for _, n := range c.Nodes() {
			n.Stop()
		}
		var wg sync.WaitGroup
		errs := make([]error, len(c.Nodes()))
		for i, n := range c.Nodes() {
			wg.Go(func() { errs[i] = n.Restart() })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: restart node %d: %v", round, i, err)
			}
		}
		// A fresh Backend's Resolve at once, while the nodes elect their
		// leaders; how long it takes once the cluster is usable is what
		// counts.
		cfg := testConfig(t, c.URLs()[0], "roster")
		cfg.Endpoints = c.URLs()
		cfg.Replicas = 3
		fresh := newBackend(t, cfg)
		type result struct {
			set []discovery.Instance
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			set, err := fresh.Resolve(ctx, p1.Service)
			done <- result{set, err, time.Now()}
		}()
		at := usable(t, c, 30*time.Second)
		r := <-done
		took := r.at.Sub(at)
		t.Logf("round %d: Resolve answered %v after the cluster was usable: %d instances, %v", round, took, len(r.set), r.err)
		// Before the cluster is usable Resolve may fail (ErrUnavailable);
		// after, it must answer, well before its 30 s context ends (which
		// it waited out before): within 10 s, a generous margin over the
		// 1.74 s at most seen in 60 rounds, for a busy machine under
		// -race (a stalled attempt is dropped after RequestTimeout/3).
		if took > 10*time.Second {
			t.Errorf("round %d: Resolve answered %v after the cluster was usable (%v); want within 10 s", round, took, r.err)
		}
	}
}
