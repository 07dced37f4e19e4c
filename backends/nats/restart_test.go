package nats_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// clusterBackend starts a 3-node cluster and a Backend on every node,
// with the bucket replicated on the three, retry and log.
func clusterBackend(t *testing.T, policy retry.Policy, log hclog.Logger) (*natstest.Cluster, *nats.Backend) {
	t.Helper()
	c := natstest.StartCluster(t, 3)
	cfg := testConfig(t, c.URLs()[0], "roster")
	cfg.Endpoints = c.URLs()
	cfg.Replicas = 3
	cfg.Retry = policy
	cfg.Logger = log
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
	gone := &countingWriter{msg: "the bucket is gone", next: testlog.Writer(t)}
	c, b := clusterBackend(t, policy, hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: gone, Level: hclog.Debug, DisableTime: true}))
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
	// The writes made before the stream had a leader found no stream:
	// the bucket was there all along, and opening it again cost JetStream
	// API requests (3 per process in roster bench).
	if n := gone.n.Load(); n != 0 {
		t.Errorf("the Backend took the bucket for gone %d times; want 0 (its stream only had no leader yet)", n)
	}
}

// countingWriter counts the log lines that contain msg, and passes every
// line on.
type countingWriter struct {
	msg  string
	next io.Writer
	n    atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.msg) {
		w.n.Add(1)
	}
	return w.next.Write(p)
}

// deadNode is a listener that accepts connections and closes them at
// once, as a node going down does to a client: it counts them.
type deadNode struct {
	ln    net.Listener
	dials atomic.Int64
	done  chan struct{}
}

func startDeadNode(t *testing.T) *deadNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &deadNode{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.dials.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-d.done })
	return d
}

// While no server answers, the client's wait between two rounds of
// connection attempts doubles from ReconnectDelay up to four
// ReconnectDelays per endpoint (here 3 × 4 × 20 ms = 240 ms): 12 rounds
// take at least 20+40+80+160+7×240 ms = 1.98 s. With the fixed wait they
// took 12 × 20-24 ms, and a fleet retrying a stopped 3-node cluster made
// 8 connection attempts per process per second (roster bench --restart).
// The returning server is then noticed within a round.
func TestReconnectWaitGrowsWhileNoServerAnswers(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	dead1, dead2 := startDeadNode(t), startDeadNode(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.Endpoints = []string{srv.URL(), "nats://" + dead1.ln.Addr().String(), "nats://" + dead2.ln.Addr().String()}
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	stopped := time.Now()
	from := dead1.dials.Load()
	testwait.Until(t, 30*time.Second, "12 rounds of connection attempts", func() bool {
		return dead1.dials.Load()-from >= 12
	})
	took := time.Since(stopped)
	t.Logf("12 rounds in %v (%d and %d attempts on the dead endpoints)", took, dead1.dials.Load()-from, dead2.dials.Load())
	if took < 1980*time.Millisecond {
		t.Errorf("12 rounds of connection attempts took %v; want at least 1.98 s (waits doubling from 20 ms to 240 ms)", took)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, p1.Key(), discovery.StateRegistered, 10*time.Second)
}
