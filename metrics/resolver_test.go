package metrics_test

import (
	"context"
	"errors"
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/metrics"
)

// The client side: Resolve and Watch through the instrumented Resolver,
// over a cache whose staleness is exported, through an outage.
func TestResolverAndCacheMetrics(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	b := newMemory(t, store)
	register(t, b, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"})
	c, err := cache.New(b, cache.WithStaleOnError(0), cache.WithRetry(fastRetry))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	col := metrics.New(nil, metrics.WithCache(c)) // a client: no registrations of its own
	defer col.Close()
	url := endpoint(t, col)
	r := col.Resolver(c)
	ctx := context.Background()

	for range 3 {
		if set, err := r.Resolve(ctx, "payments"); err != nil || len(set) != 1 {
			t.Fatalf("Resolve = %v, %v", set, err)
		}
	}
	if _, err := r.Resolve(ctx, "no such service!"); !errors.Is(err, discovery.ErrInvalidInstance) {
		t.Fatalf("Resolve of an invalid name: %v", err)
	}
	f := waitMetrics(t, url, "resolves counted",
		want{"roster_resolve_duration_seconds", []string{"service", "payments"}, 3},
		want{"roster_resolve_errors_total", []string{"service", "payments"}, 0},
		want{"roster_resolve_duration_seconds", []string{"service", "(invalid)"}, 1},
		want{"roster_resolve_errors_total", []string{"service", "(invalid)"}, 1},
		want{"roster_cache_instances", []string{"service", "payments"}, 1},
		want{"roster_cache_stale", []string{"service", "payments"}, 0},
		want{"roster_cache_age_seconds", []string{"service", "payments"}, 0},
	)
	for _, name := range []string{"roster_registrations", "roster_backend_connected", "roster_lease_remaining_seconds"} {
		if f[name] != nil {
			t.Errorf("a Collector without StatusReporter exports %s", name)
		}
	}

	w, err := r.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w2, err := r.Watch(wctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	waitMetrics(t, url, "two watchers", want{"roster_watchers", []string{"service", "payments"}, 2})
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	register(t, b, discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"})
	if set, err := w.Next(ctx); err != nil || len(set) != 2 {
		t.Fatalf("Next = %v, %v; want 2 instances", set, err)
	}
	waitMetrics(t, url, "two updates",
		want{"roster_watch_updates_total", []string{"service", "payments"}, 2},
		want{"roster_cache_instances", []string{"service", "payments"}, 2})

	// An outage: the cache serves its last set, stale, and ages.
	store.SetAvailable(false)
	if _, err := w.Next(ctx); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("Next during the outage: %v; want ErrUnavailable", err)
	}
	f = waitMetrics(t, url, "the cache stale", want{"roster_cache_stale", []string{"service", "payments"}, 1},
		want{"roster_watch_updates_total", []string{"service", "payments"}, 2})
	if age := f.value("roster_cache_age_seconds", "service", "payments"); age <= 0 {
		t.Errorf("cache age during the outage = %v; want more than 0", age)
	}
	store.SetAvailable(true)
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, "the cache fresh again",
		want{"roster_cache_stale", []string{"service", "payments"}, 0},
		want{"roster_cache_age_seconds", []string{"service", "payments"}, 0},
		want{"roster_watch_updates_total", []string{"service", "payments"}, 3})

	// A watcher leaves with its context, another with Stop (twice).
	cancel()
	waitMetrics(t, url, "one watcher", want{"roster_watchers", []string{"service", "payments"}, 1})
	w.Stop()
	w.Stop()
	w2.Stop()
	waitMetrics(t, url, "no watcher", want{"roster_watchers", []string{"service", "payments"}, 0})
}
