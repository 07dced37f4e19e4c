package resolvertest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/testing/resolvertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLong = 5 * time.Second

var a = discovery.Instance{Service: "greeter", ID: "a", Address: "10.0.0.1:1"}

func TestUpstreamCountsAndPassesOn(t *testing.T) {
	e := resolvertest.NewEnv(t)
	e.Register(t, a)
	set, err := e.Up.Resolve(context.Background(), a.Service)
	if err != nil || len(set) != 1 || set[0].ID != a.ID {
		t.Fatalf("Resolve = %v, %v; want [a]", set, err)
	}
	w, err := e.Up.Watch(context.Background(), a.Service)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.Up.ActiveWatchers(); n != 1 {
		t.Errorf("ActiveWatchers = %d with one watcher open, want 1", n)
	}
	w.Stop()
	if n := e.Up.ActiveWatchers(); n != 0 {
		t.Errorf("ActiveWatchers = %d after Stop, want 0", n)
	}
	if r, w := e.Up.Resolves(), e.Up.Watches(); r != 1 || w != 1 {
		t.Errorf("Resolves, Watches = %d, %d; want 1, 1", r, w)
	}
}

func TestFailWatch(t *testing.T) {
	e := resolvertest.NewEnv(t)
	errFail := errors.New("fail")
	e.Up.FailWatch(errFail)
	if _, err := e.Up.Watch(context.Background(), a.Service); !errors.Is(err, errFail) {
		t.Fatalf("Watch = %v, want %v", err, errFail)
	}
	e.Up.FailWatch(nil)
	w, err := e.Up.Watch(context.Background(), a.Service)
	if err != nil {
		t.Fatalf("Watch after FailWatch(nil) = %v", err)
	}
	w.Stop()
	if got := e.Up.Watches(); got != 2 {
		t.Errorf("Watches = %d, want 2: failed calls count too", got)
	}
}

func TestBreakWatchersEndsAPendingNext(t *testing.T) {
	e := resolvertest.NewEnv(t)
	e.Register(t, a)
	w, err := e.Up.Watch(context.Background(), a.Service)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if set, err := w.Next(ctx); err != nil || len(set) != 1 {
		t.Fatalf("first Next = %v, %v; want [a]", set, err)
	}

	errBroken := errors.New("broken")
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		done <- err
	}()
	e.Up.BreakWatchers(errBroken)
	select {
	case err := <-done:
		if !errors.Is(err, errBroken) {
			t.Errorf("pending Next = %v, want %v", err, errBroken)
		}
	case <-ctx.Done():
		t.Fatal("BreakWatchers did not end a pending Next")
	}
	if _, err := w.Next(ctx); !errors.Is(err, errBroken) {
		t.Errorf("Next after the break = %v, want %v", err, errBroken)
	}
}

func TestFeed(t *testing.T) {
	feed := backendkit.NewFeed()
	r := resolvertest.Feed{Feed: feed}
	feed.Publish([]discovery.Instance{a})
	set, err := r.Resolve(context.Background(), "any")
	if err != nil || len(set) != 1 || set[0].ID != a.ID {
		t.Fatalf("Resolve = %v, %v; want [a]", set, err)
	}
	w, err := r.Watch(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if set, err := w.Next(ctx); err != nil || len(set) != 1 || set[0].ID != a.ID {
		t.Fatalf("Next = %v, %v; want [a]", set, err)
	}
}
