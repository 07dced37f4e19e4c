package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
)

// TestDrainPublishesDrainingThenLeaves: a watcher sees the instance in
// ConditionDraining, then, no sooner than the delay later, the set
// without it; never a set without it before the draining one.
func TestDrainPublishesDrainingThenLeaves(t *testing.T) {
	store := memory.NewStore()
	b, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Weight: 200}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"}
	for _, in := range []discovery.Instance{p1, p2} {
		if err := b.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if got, err := w.Next(ctx); err != nil || len(got) != 2 {
		t.Fatalf("first Next = %v, %v", got, err)
	}
	const delay = 200 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- discovery.Drain(ctx, b, delay, p1) }()

	got, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	drainingSeen := time.Now()
	if len(got) != 2 || got[0].Condition != discovery.ConditionDraining || got[0].Reason != discovery.DrainReason || got[0].Weight != 200 {
		t.Fatalf("after Drain the watcher saw %+v; want p-1 draining (reason %q, weight kept) beside p-2", got, discovery.DrainReason)
	}
	if routed, _ := discovery.Routable(got); len(routed) != 1 || routed[0].ID != "p-2" {
		t.Errorf("Routable while p-1 drains = %+v; want only p-2", routed)
	}
	got, err = w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "p-2" {
		t.Fatalf("after the drain delay the watcher saw %+v; want only p-2", got)
	}
	if gap := time.Since(drainingSeen); gap < delay-10*time.Millisecond {
		t.Errorf("removed %v after it was seen draining; want no sooner than the delay, %v", gap, delay)
	}
	if err := <-done; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

// TestDrainCutShortStillDeregisters: a context that ends during the delay
// ends the wait, and the instance is still removed.
func TestDrainCutShortStillDeregisters(t *testing.T) {
	b, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = discovery.Drain(ctx, b, time.Hour, p1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a context shorter than the delay = %v; want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Drain took %v", d)
	}
	if got, err := b.Resolve(t.Context(), "payments"); err != nil || len(got) != 0 {
		t.Errorf("Resolve after the drain = %v, %v; want empty", got, err)
	}
}
