// Package resolvertest provides test doubles for discovery.Resolver, for
// roster's own tests: an Upstream that counts its calls and fails on
// demand, a Feed resolver that answers from one backendkit.Feed, and an Env
// that wires an Upstream to an in-memory registry.
package resolvertest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// Upstream wraps a Resolver, counts its calls and can make it fail: Watch
// with a set error, and the watchers it handed out on demand. It is safe
// for concurrent use.
type Upstream struct {
	next     discovery.Resolver
	resolves atomic.Int64
	watches  atomic.Int64

	mu       sync.Mutex
	watchErr error // when set, Watch fails with it
	active   map[*flakyWatcher]struct{}
}

// NewUpstream returns an Upstream that passes its calls on to next.
func NewUpstream(next discovery.Resolver) *Upstream {
	return &Upstream{next: next, active: make(map[*flakyWatcher]struct{})}
}

// Resolve counts the call and passes it on.
func (u *Upstream) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	u.resolves.Add(1)
	return u.next.Resolve(ctx, service)
}

// Watch counts the call and, unless FailWatch has set an error, passes it
// on and returns a watcher that BreakWatchers can break.
func (u *Upstream) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
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

// Resolves counts the calls to Resolve so far.
func (u *Upstream) Resolves() int64 { return u.resolves.Load() }

// Watches counts the calls to Watch so far, failed ones included.
func (u *Upstream) Watches() int64 { return u.watches.Load() }

// FailWatch makes Watch fail with err; nil lets it succeed again.
func (u *Upstream) FailWatch(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.watchErr = err
}

// BreakWatchers makes every watcher handed out so far, and not stopped,
// fail with err: a pending Next returns at once, and every later one too.
func (u *Upstream) BreakWatchers(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for w := range u.active {
		w.breakWith(err)
	}
}

// ActiveWatchers counts the watchers handed out and not stopped yet.
func (u *Upstream) ActiveWatchers() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.active)
}

// flakyWatcher is a Watcher of an Upstream that can be broken.
type flakyWatcher struct {
	next   discovery.Watcher
	up     *Upstream
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

// Feed is a Resolver that answers from one feed, whatever the service:
// Resolve with its current set, Watch with a new watcher of it.
type Feed struct{ Feed *backendkit.Feed }

// Resolve returns the feed's current set.
func (f Feed) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	set, _ := f.Feed.Current()
	return set, nil
}

// Watch returns a new watcher of the feed.
func (f Feed) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	return f.Feed.NewWatcher(ctx, nil), nil
}

// Env is a memory Store with a Backend to register instances on (Reg) and
// an Upstream resolving through another Backend of the same Store (Up).
type Env struct {
	Store *memory.Store
	Reg   *memory.Backend
	Up    *Upstream
}

// NewEnv returns an Env whose backends are closed when the test ends.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	store := memory.NewStore()
	reg := newBackend(t, store)
	back := newBackend(t, store)
	return &Env{Store: store, Reg: reg, Up: NewUpstream(back)}
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

// Register registers each of ins on e.Reg, failing the test on an error.
func (e *Env) Register(t testing.TB, ins ...discovery.Instance) {
	t.Helper()
	for _, in := range ins {
		if err := e.Reg.Register(context.Background(), in); err != nil {
			t.Fatalf("Register(%s): %v", in.ID, err)
		}
	}
}

// Deregister deregisters each of ins from e.Reg, failing the test on an
// error.
func (e *Env) Deregister(t testing.TB, ins ...discovery.Instance) {
	t.Helper()
	for _, in := range ins {
		if err := e.Reg.Deregister(context.Background(), in); err != nil {
			t.Fatalf("Deregister(%s): %v", in.ID, err)
		}
	}
}
