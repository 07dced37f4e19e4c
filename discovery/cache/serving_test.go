package cache_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestRoutable: Routable picks what the gRPC resolver would (serving ones,
// not-ready ones when none serves, never draining), as deep copies, from
// memory; Resolve still returns every instance with its condition.
func TestRoutable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, c := inst("a", 1), inst("b", 2), inst("c", 3)
	b.Condition, b.Reason = discovery.ConditionNotReady, "warming up"
	c.Condition = discovery.ConditionDraining
	e.Register(t, a, b, c)
	strict := e.newCache(t, cache.WithRoutePolicy(discovery.RoutePolicy{NoFallback: true}))
	r := e.newCache(t)
	ctx := context.Background()
	routable := func(r *cache.Resolver) string {
		t.Helper()
		got, fallback, err := r.Routable(ctx, service)
		if err != nil {
			t.Fatalf("Routable: %v", err)
		}
		return fmt.Sprint(ids(got), fallback)
	}
	if got := routable(r); got != "[a] false" {
		t.Errorf("Routable = %s; want [a] false", got)
	}
	wantIDs(t, "Resolve", resolveIDs(t, r), "a", "b", "c")

	got, _, _ := r.Routable(ctx, service)
	got[0].Metadata["zone"] = "changed"
	if again, _, _ := r.Routable(ctx, service); again[0].Metadata["zone"] != "a" {
		t.Error("modifying a Routable result changed the cache's")
	}

	a.Condition = discovery.ConditionDraining
	e.Register(t, a)
	testwait.Until(t, waitLong, "the fallback on b", func() bool { return routable(r) == "[b] true" })
	testwait.Until(t, waitLong, "nothing routable without fallback", func() bool { return routable(strict) == "[] false" })
	if n := e.Up.Resolves(); n != 0 {
		t.Errorf("upstream Resolve called %d times; want 0, Routable answers from memory", n)
	}
}
