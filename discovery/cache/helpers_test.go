package cache_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testing/resolvertest"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

// waitLong bounds every wait for something that must happen; quiet is how
// long a test watches for something that must not happen, always inside a
// testing/synctest bubble, whose clock passes it only once every goroutine
// of the bubble is blocked: by then, whatever was going to happen has.
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

// env is resolvertest's Env (a memory Store, a Backend to register on and
// an instrumented Upstream) with the cache tests' own helpers.
type env struct{ *resolvertest.Env }

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{resolvertest.NewEnv(t)}
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

// newCache returns a cache over e.Up, closed when the test ends (before
// the backends are).
func (e *env) newCache(t *testing.T, opts ...cache.Option) *cache.Resolver {
	t.Helper()
	opts = append([]cache.Option{cache.WithRetry(fastRetry), cache.WithLogger(testLogger(t))}, opts...)
	c := mustNew(t, e.Up, opts...)
	t.Cleanup(func() { c.Close() })
	return c
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
// watchFirst watches service on r, stops the watcher when t ends, and
// returns it with its first set, failing t if that set does not come.
func watchFirst(t *testing.T, r discovery.Resolver) (discovery.Watcher, []discovery.Instance) {
	t.Helper()
	w, err := r.Watch(context.Background(), service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	set, err := nextWithin(w, waitLong)
	if err != nil {
		t.Fatalf("first Next: %v", err)
	}
	return w, set
}

// holding registers the instance a, makes a cache that holds an empty
// set for hold, and watches it; the watcher's first set must be [a].
func holding(t *testing.T, hold time.Duration) (*env, discovery.Instance, *cache.Resolver, discovery.Watcher) {
	t.Helper()
	e := newEnv(t)
	a := inst("a", 1)
	e.Register(t, a)
	c := e.newCache(t, cache.WithEmptyHold(hold))
	w, first := watchFirst(t, c)
	if len(first) != 1 {
		t.Fatalf("first Next = %v, want 1 instance", first)
	}
	return e, a, c, w
}

// wantEmptyAfter reads w's next set, which must be empty and come exactly
// hold after since (on the bubble's clock); what names since.
func wantEmptyAfter(t *testing.T, w discovery.Watcher, since time.Time, hold time.Duration, what string) {
	t.Helper()
	set, err := nextWithin(w, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(since); d != hold {
		t.Errorf("empty set published %v after %s, want the hold, %v", d, what, hold)
	}
	wantIDs(t, "Next after the hold", ids(set))
}

func testLogger(t testing.TB) hclog.Logger { return testlog.New(t) }
