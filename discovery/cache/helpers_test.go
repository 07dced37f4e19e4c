package cache_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testlog"
	"github.com/roster-sd/roster/retry"
)

// waitLong bounds every wait for something that must happen; quiet is how
// long a test watches for something that must not happen.
const (
	waitLong = 5 * time.Second
	quiet    = 50 * time.Millisecond
)

const service = "greeter"

// fastRetry keeps fault tests in the milliseconds.
var fastRetry = retry.Policy{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

func inst(id string, port int) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Address: fmt.Sprintf("10.0.0.1:%d", port),
		Metadata: map[string]string{"zone": "a"}}
}

func ids(set []discovery.Instance) []string {
	out := make([]string, 0, len(set))
	for _, in := range set {
		out = append(out, in.ID)
	}
	return out
}

// env is a memory Store with a Backend to register on (reg) and an
// instrumented upstream Resolver on another Backend of the same Store.
type env struct {
	store *memory.Store
	reg   *memory.Backend
	up    *upstream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	store := memory.NewStore()
	reg := newBackend(t, store)
	back := newBackend(t, store)
	return &env{store: store, reg: reg, up: newUpstream(back)}
}

// newBackend returns a memory Backend on store, closed when the test ends.
func newBackend(t testing.TB, store *memory.Store) *memory.Backend {
	t.Helper()
	b, err := memory.New(store)
	if err != nil {
		t.Fatalf("memory.New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// mustNew returns cache.New(up, opts...), failing the test on an error.
// The caller closes the Resolver.
func mustNew(t testing.TB, up discovery.Resolver, opts ...cache.Option) *cache.Resolver {
	t.Helper()
	c, err := cache.New(up, opts...)
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	return c
}

// newCache returns a cache over e.up, closed when the test ends (before
// the backends are).
func (e *env) newCache(t *testing.T, opts ...cache.Option) *cache.Resolver {
	t.Helper()
	opts = append([]cache.Option{cache.WithRetry(fastRetry), cache.WithLogger(testLogger(t))}, opts...)
	c := mustNew(t, e.up, opts...)
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) register(t *testing.T, ins ...discovery.Instance) {
	t.Helper()
	for _, in := range ins {
		if err := e.reg.Register(context.Background(), in); err != nil {
			t.Fatalf("Register(%s): %v", in.ID, err)
		}
	}
}

func (e *env) deregister(t *testing.T, ins ...discovery.Instance) {
	t.Helper()
	for _, in := range ins {
		if err := e.reg.Deregister(context.Background(), in); err != nil {
			t.Fatalf("Deregister(%s): %v", in.ID, err)
		}
	}
}

// upstream wraps a Resolver, counts its calls and can make it fail: Watch
// with a set error, and the watchers it handed out on demand.
type upstream struct {
	next     discovery.Resolver
	resolves atomic.Int64
	watches  atomic.Int64

	mu       sync.Mutex
	watchErr error // when set, Watch fails with it
	active   map[*flakyWatcher]struct{}
}

func newUpstream(next discovery.Resolver) *upstream {
	return &upstream{next: next, active: make(map[*flakyWatcher]struct{})}
}

func (u *upstream) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	u.resolves.Add(1)
	return u.next.Resolve(ctx, service)
}

func (u *upstream) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	u.watches.Add(1)
	u.mu.Lock()
	err := u.watchErr
	u.mu.Unlock()
	if err != nil {
		return nil, err
	}
	w, err := u.next.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	fw := &flakyWatcher{next: w, up: u, broken: make(chan struct{})}
	u.mu.Lock()
	u.active[fw] = struct{}{}
	u.mu.Unlock()
	return fw, nil
}

// failWatch makes Watch fail with err; nil lets it succeed again.
func (u *upstream) failWatch(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.watchErr = err
}

// breakWatchers makes every watcher handed out so far fail with err.
func (u *upstream) breakWatchers(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for w := range u.active {
		w.breakWith(err)
	}
}

// activeWatchers counts the watchers handed out and not stopped yet.
func (u *upstream) activeWatchers() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.active)
}

type flakyWatcher struct {
	next   discovery.Watcher
	up     *upstream
	once   sync.Once
	broken chan struct{}
	err    error // set before broken is closed
}

func (w *flakyWatcher) breakWith(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.broken)
	})
}

func (w *flakyWatcher) Next(ctx context.Context) ([]discovery.Instance, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.broken:
			cancel()
		case <-ctx.Done():
		}
	}()
	set, err := w.next.Next(ctx)
	select {
	case <-w.broken:
		return nil, w.err
	default:
		return set, err
	}
}

func (w *flakyWatcher) Stop() {
	w.next.Stop()
	w.up.mu.Lock()
	delete(w.up.active, w)
	w.up.mu.Unlock()
}

// eventually polls cond until it holds, failing the test after waitLong.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLong, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func resolveIDs(t *testing.T, r discovery.Resolver) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	set, err := r.Resolve(ctx, service)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return ids(set)
}

// nextWithin calls w.Next with a deadline of d.
func nextWithin(w discovery.Watcher, d time.Duration) ([]discovery.Instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Next(ctx)
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// testLogger routes logs to t.Log until the test ends.
func testLogger(t testing.TB) hclog.Logger { return testlog.New(t) }
