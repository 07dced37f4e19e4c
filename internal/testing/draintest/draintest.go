// Package draintest checks, in roster's backend tests, that a backend's
// Close asked to drain (etcd and NATS Config.DrainOnClose, memory
// WithDrainOnClose) takes its instances out of rotation before it removes
// them, and that it stays bounded when the registry cannot be reached. It
// imports testing, so only _test.go files may import it.
package draintest

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// waitFor bounds every wait for something that must happen.
const waitFor = 20 * time.Second

// CloseDrains runs closeFn, the Close of a backend holding in registered
// and asked to drain for d, while reading w, a watcher of in's service on
// another backend. It fails t unless w sees in draining (with a Reason)
// before it sees in gone, never sees in back in another condition after
// that, Close returns nil, and Close took at least d (the drain waits for
// the rest of d once it has published). It returns the time from the
// moment w saw in draining to the moment it saw in gone.
func CloseDrains(t *testing.T, w discovery.Watcher, in discovery.Instance, d time.Duration, closeFn func() error) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		err := closeFn()
		done <- result{time.Since(start), err}
	}()

	var drainingAt time.Time
	var seen []string
	for {
		set, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("watching %s while Close drains: %v (saw %v)", in.Key(), err, seen)
		}
		var got *discovery.Instance
		for i := range set {
			if set[i].Key() == in.Key() {
				got = &set[i]
			}
		}
		switch {
		case got == nil:
			seen = append(seen, "gone")
		default:
			seen = append(seen, got.Condition.String())
		}
		if got == nil {
			if drainingAt.IsZero() {
				t.Fatalf("the watcher saw %s removed without seeing it draining first (saw %v)", in.Key(), seen)
			}
			gap := time.Since(drainingAt)
			r := <-done
			if r.err != nil {
				t.Errorf("Close: %v", r.err)
			}
			if r.took < d {
				t.Errorf("Close took %v; want at least the drain's %v", r.took, d)
			}
			t.Logf("watcher saw %v; removal %v after draining; Close took %v", seen, gap, r.took)
			return gap
		}
		switch {
		case got.Condition == discovery.ConditionDraining:
			if got.Reason == "" {
				t.Errorf("%s draining without a reason", in.Key())
			}
			if drainingAt.IsZero() {
				drainingAt = time.Now()
			}
		case !drainingAt.IsZero():
			t.Fatalf("%s went back to %v after draining (saw %v)", in.Key(), got.Condition, seen)
		}
	}
}

// CloseWithin runs closeFn and fails t if it has not returned within
// bound; it returns Close's error.
func CloseWithin(t *testing.T, bound time.Duration, closeFn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- closeFn() }()
	select {
	case err := <-done:
		t.Logf("Close returned after %v: %v", time.Since(start), err)
		return err
	case <-time.After(bound):
		t.Fatalf("Close has not returned after %v", bound)
		return nil
	}
}

// Watch returns a watcher of in's service on r, stopped at the end of the
// test, that has seen a set holding in alone.
func Watch(t *testing.T, r discovery.Resolver, in discovery.Instance) discovery.Watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	w, err := r.Watch(context.Background(), in.Service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	for {
		set, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for a watcher to see %s: %v", in.Key(), err)
		}
		if len(set) == 1 && set[0].Key() == in.Key() {
			return w
		}
	}
}
