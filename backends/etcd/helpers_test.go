package etcd_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

// Test timings: a short lease and a scaled-down retry policy, so fault
// tests run in seconds.
const (
	testTTL = 2 * time.Second
	// waitFor bounds how long a test waits for a condition that should
	// hold quickly.
	waitFor = 10 * time.Second
	// heavyWait and heavyRequestTimeout are for tests that write hundreds
	// of keys or megabytes at once: what they assert is that everything
	// comes back, and a machine whose cores are busy with other work may
	// take several seconds over one such write.
	heavyWait           = 45 * time.Second
	heavyRequestTimeout = 5 * time.Second
)

func testRetry() retry.Policy {
	return retry.Policy{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}
}

// testLogger routes logs to t.Log until the test ends.
func testLogger(t testing.TB) hclog.Logger { return testlog.New(t) }

// testConfig is the Config the tests start from.
func testConfig(t testing.TB, endpoints []string) etcd.Config {
	return etcd.Config{
		Endpoints:      endpoints,
		TTL:            testTTL,
		Retry:          testRetry(),
		RequestTimeout: time.Second,
		ReconnectDelay: 200 * time.Millisecond,
		Logger:         testLogger(t),
	}
}

// newBackend starts a Backend closed at the end of the test.
func newBackend(t testing.TB, cfg etcd.Config) *etcd.Backend {
	t.Helper()
	b, err := etcd.New(cfg)
	if err != nil {
		t.Fatalf("etcd.New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func instance(service, id string) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Address: "127.0.0.1:8080", Metadata: map[string]string{"zone": "a"}}
}

func register(t testing.TB, b *etcd.Backend, in discovery.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.Register(ctx, in); err != nil {
		t.Fatalf("Register(%v): %v", in.Key(), err)
	}
}

// getKey reads key with a short timeout; it reports whether the read
// succeeded and the key-value (nil when absent).
func getKey(cli *clientv3.Client, key string, timeout time.Duration) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return cli.Get(ctx, key)
}

// keyLease returns the lease of key, or 0 when it is absent or unreadable.
func keyLease(cli *clientv3.Client, key string) clientv3.LeaseID {
	resp, err := getKey(cli, key, time.Second)
	if err != nil || len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// stateRecorder collects the states a subscription sees.
type stateRecorder struct {
	mu     sync.Mutex
	seen   []discovery.Status
	change chan struct{}
}

func recordStates(t testing.TB, b discovery.StatusReporter) *stateRecorder {
	r := &stateRecorder{change: make(chan struct{}, 1)}
	sub := b.SubscribeStatus()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			r.mu.Lock()
			r.seen = append(r.seen, st)
			r.mu.Unlock()
			select {
			case r.change <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { sub.Stop(); <-done })
	return r
}

func (r *stateRecorder) states() []discovery.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]discovery.State, len(r.seen))
	for i, st := range r.seen {
		out[i] = st.State
	}
	return out
}

func (r *stateRecorder) statuses() []discovery.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]discovery.Status(nil), r.seen...)
}

// waitState waits until the last recorded state is want, returning when it
// was seen.
func (r *stateRecorder) waitState(t testing.TB, want discovery.State, d time.Duration) time.Time {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		n := len(r.seen)
		var last discovery.Status
		if n > 0 {
			last = r.seen[n-1]
		}
		r.mu.Unlock()
		if n > 0 && last.State == want {
			return last.Since
		}
		select {
		case <-r.change:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for state %v; seen %v", d, want, r.states())
		}
	}
}

// subsequence reports whether want appears in got in order.
func subsequence(got, want []discovery.State) bool {
	i := 0
	for _, s := range got {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

// compactNow compacts etcd's history up to its current revision.
func compactNow(t testing.TB, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Get(context.Background(), "compact-marker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}
