package cache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testing/resolvertest"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

var errBroken = errors.New("test: watch broken")

func TestResolveServedFromCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Register(t, inst("b", 2), inst("a", 1))
	c := e.newCache(t)

	wantIDs(t, "first Resolve", resolveIDs(t, c), "a", "b")
	for range 100 {
		wantIDs(t, "Resolve", resolveIDs(t, c), "a", "b")
	}
	if got := e.Up.Resolves(); got != 0 {
		t.Errorf("upstream Resolve called %d times, want 0: the cache must answer from memory", got)
	}
	if got := e.Up.Watches(); got != 1 {
		t.Errorf("upstream Watch called %d times, want once per service", got)
	}

	// Results are deep copies.
	set, err := c.Resolve(context.Background(), service)
	if err != nil {
		t.Fatal(err)
	}
	set[0].Metadata["zone"] = "changed"
	set[1] = discovery.Instance{}
	again, _ := c.Resolve(context.Background(), service)
	if got := again[0].Metadata["zone"]; got != "a" {
		t.Errorf("zone after modifying an earlier result = %q, want %q", got, "a")
	}
	wantIDs(t, "Resolve after modifying an earlier result", ids(again), "a", "b")

	// Changes reach the cache through the watch, still without Resolve.
	e.Register(t, inst("c", 3))
	e.Deregister(t, inst("a", 1))
	testwait.Until(t, waitLong, "the cache to see the change", func() bool {
		return fmt.Sprint(resolveIDs(t, c)) == "[b c]"
	})
	if got := e.Up.Resolves(); got != 0 {
		t.Errorf("upstream Resolve called %d times, want 0", got)
	}

	// A second service gets a watch of its own; an unknown one is empty.
	other, err := c.Resolve(context.Background(), "other")
	if err != nil || len(other) != 0 {
		t.Errorf(`Resolve("other") = %v, %v; want an empty set`, other, err)
	}
	if got := e.Up.Watches(); got != 2 {
		t.Errorf("upstream Watch called %d times for 2 services, want 2", got)
	}
}

func TestWatchersShareOneUpstreamWatch(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.Register(t, inst("a", 1))
		c := e.newCache(t)
		ctx := context.Background()

		var ws []discovery.Watcher
		for range 3 {
			w, err := c.Watch(ctx, service)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			ws = append(ws, w)
		}
		for i, w := range ws {
			set, err := nextWithin(w, waitLong)
			if err != nil {
				t.Fatalf("watcher %d: first Next: %v", i, err)
			}
			wantIDs(t, "first Next", ids(set), "a")
		}

		e.Register(t, inst("b", 2))
		for i, w := range ws {
			set, err := nextWithin(w, waitLong)
			if err != nil {
				t.Fatalf("watcher %d: Next after register: %v", i, err)
			}
			wantIDs(t, "Next after register", ids(set), "a", "b")
		}
		e.Deregister(t, inst("a", 1))
		for i, w := range ws {
			set, err := nextWithin(w, waitLong)
			if err != nil {
				t.Fatalf("watcher %d: Next after deregister: %v", i, err)
			}
			wantIDs(t, "Next after deregister", ids(set), "b")
		}
		if _, err := nextWithin(ws[0], quiet); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next with no change = %v, want it to block", err)
		}
		if got := e.Up.Watches(); got != 1 {
			t.Errorf("upstream Watch called %d times for 3 watchers, want 1", got)
		}
		if got := e.Up.Resolves(); got != 0 {
			t.Errorf("upstream Resolve called %d times, want 0", got)
		}
	})
}

func TestStaleOnError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.Register(t, inst("a", 1), inst("b", 2))
		c := e.newCache(t, cache.WithStaleOnError(0))
		wantIDs(t, "Resolve", resolveIDs(t, c), "a", "b")
		if _, age, stale, ok := c.Snapshot(service); !ok || stale || age != 0 {
			t.Fatalf("Snapshot of a healthy service: age %v, stale %v, ok %v; want 0, false, true", age, stale, ok)
		}
		w, _ := watchFirst(t, c)

		// The upstream watch breaks with an error other than
		// discovery.ErrUnavailable, and cannot be set up again.
		e.Up.FailWatch(errBroken)
		e.Up.BreakWatchers(errBroken)
		testwait.Until(t, waitLong, "Snapshot to report the set stale", func() bool {
			_, _, stale, _ := c.Snapshot(service)
			return stale
		})
		set, age1, stale, ok := c.Snapshot(service)
		wantIDs(t, "stale Snapshot", ids(set), "a", "b")
		if !ok || !stale {
			t.Fatalf("Snapshot: stale %v, ok %v; want true, true", stale, ok)
		}
		time.Sleep(20 * time.Millisecond) // the bubble's clock: exactly 20ms
		_, age2, _, _ := c.Snapshot(service)
		if age2 != age1+20*time.Millisecond {
			t.Errorf("Snapshot age went from %v to %v in 20ms; want it to grow by 20ms", age1, age2)
		}
		// The cache keeps retrying: Watch keeps being called and failing.
		watches := e.Up.Watches()
		testwait.Until(t, waitLong, "the cache to retry the upstream watch", func() bool {
			return e.Up.Watches() >= watches+2
		})
		wantIDs(t, "Resolve while the upstream fails", resolveIDs(t, c), "a", "b")
		if _, err := nextWithin(w, quiet); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("watcher Next during the outage = %v, want it to block on the last set", err)
		}

		// The upstream comes back: the cache resumes on its own.
		e.Up.FailWatch(nil)
		testwait.Until(t, waitLong, "Snapshot to be fresh again", func() bool {
			_, age, stale, _ := c.Snapshot(service)
			return !stale && age == 0
		})
		e.Register(t, inst("c", 3))
		set, err := nextWithin(w, waitLong)
		if err != nil {
			t.Fatal(err)
		}
		wantIDs(t, "Next after recovery", ids(set), "a", "b", "c")
		wantIDs(t, "Resolve after recovery", resolveIDs(t, c), "a", "b", "c")
		if got := e.Up.Resolves(); got != 0 {
			t.Errorf("upstream Resolve called %d times, want 0", got)
		}
	})
}

func TestStaleErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts []cache.Option
		// within is how long after the failure Resolve keeps serving the
		// stale set.
		within time.Duration
	}{
		{"without stale-on-error", nil, 0},
		{"stale-on-error max age exceeded", []cache.Option{cache.WithStaleOnError(100 * time.Millisecond)}, 100 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.Register(t, inst("a", 1))
			c := e.newCache(t, tc.opts...)
			wantIDs(t, "Resolve", resolveIDs(t, c), "a")

			e.Up.FailWatch(errBroken)
			broken := time.Now()
			e.Up.BreakWatchers(errBroken)
			testwait.Until(t, waitLong, "Snapshot to report the set stale", func() bool {
				_, _, stale, _ := c.Snapshot(service)
				return stale
			})
			var err error
			testwait.Until(t, waitLong, "Resolve to fail with the upstream's error", func() bool {
				_, err = c.Resolve(context.Background(), service)
				return errors.Is(err, errBroken)
			})
			if d := time.Since(broken); d < tc.within {
				t.Errorf("Resolve failed %v after the upstream, want it to serve the stale set for %v", d, tc.within)
			}
			t.Logf("Resolve error: %v", err)
			// Snapshot still shows the last set.
			if set, _, stale, ok := c.Snapshot(service); !ok || !stale || len(set) != 1 {
				t.Errorf("Snapshot = %v, stale %v, ok %v; want the last set, stale", set, stale, ok)
			}

			e.Up.FailWatch(nil)
			testwait.Until(t, waitLong, "Resolve to succeed again", func() bool {
				_, err := c.Resolve(context.Background(), service)
				return err == nil
			})
		})
	}
}

// TestRegistryOutage: when the upstream's watcher reports the registry
// unavailable, the cache goes stale but keeps that watcher, and its own
// watchers see the outage the same way.
func TestRegistryOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.Register(t, inst("a", 1), inst("b", 2))
		c := e.newCache(t, cache.WithStaleOnError(0))
		wantIDs(t, "Resolve", resolveIDs(t, c), "a", "b")
		w, _ := watchFirst(t, c)

		start := time.Now()
		e.Store.SetAvailable(false)
		// The cache's watcher is told once, as the upstream's are.
		_, err := nextWithin(w, waitLong)
		if !errors.Is(err, discovery.ErrUnavailable) || !errors.Is(err, memory.ErrUnavailable) {
			t.Fatalf("Next during the outage = %v, want an error wrapping discovery.ErrUnavailable and memory.ErrUnavailable", err)
		}
		if set, err := nextWithin(w, quiet); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second Next during the outage = %v, %v; want it to wait", set, err)
		}
		set, age1, stale, ok := c.Snapshot(service)
		wantIDs(t, "Snapshot during the outage", ids(set), "a", "b")
		if !ok || !stale || age1 <= 0 || age1 > time.Since(start) {
			t.Fatalf("Snapshot during the outage: age %v, stale %v, ok %v; want stale, age counting from the outage (at most %v)",
				age1, stale, ok, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond) // the bubble's clock: exactly 20ms
		if _, age2, stale, _ := c.Snapshot(service); !stale || age2 != age1+20*time.Millisecond {
			t.Errorf("Snapshot age went from %v to %v in 20ms (stale %v); want it to grow by 20ms, stale", age1, age2, stale)
		}
		wantIDs(t, "Resolve during the outage", resolveIDs(t, c), "a", "b")
		// The upstream watcher was kept, not stopped and watched again.
		if got := e.Up.Watches(); got != 1 {
			t.Errorf("upstream Watch called %d times, want 1: the watcher survives the outage", got)
		}
		if got := e.Up.ActiveWatchers(); got != 1 {
			t.Errorf("%d upstream watchers open during the outage, want 1", got)
		}

		e.Store.SetAvailable(true)
		// The same set comes again: the cache is fresh.
		set, err = nextWithin(w, waitLong)
		if err != nil {
			t.Fatalf("Next after the outage: %v", err)
		}
		wantIDs(t, "Next after the outage", ids(set), "a", "b")
		testwait.Until(t, waitLong, "Snapshot to be fresh again", func() bool {
			_, age, stale, _ := c.Snapshot(service)
			return !stale && age == 0
		})
		if set, err := nextWithin(w, quiet); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next with nothing changed = %v, %v; want it to wait", set, err)
		}
		e.Register(t, inst("c", 3))
		set, err = nextWithin(w, waitLong)
		if err != nil {
			t.Fatal(err)
		}
		wantIDs(t, "Next after a change", ids(set), "a", "b", "c")
		if got := e.Up.Watches(); got != 1 {
			t.Errorf("upstream Watch called %d times, want 1", got)
		}
		if got := e.Up.Resolves(); got != 0 {
			t.Errorf("upstream Resolve called %d times, want 0", got)
		}
	})
}

func TestRegistryOutageResolve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		opts      []cache.Option
		wantStale bool // Resolve serves the last set during the outage
	}{
		{"with stale-on-error", []cache.Option{cache.WithStaleOnError(0)}, true},
		{"without stale-on-error", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.Register(t, inst("a", 1))
			c := e.newCache(t, tc.opts...)
			wantIDs(t, "Resolve", resolveIDs(t, c), "a")

			e.Store.SetAvailable(false)
			testwait.Until(t, waitLong, "Snapshot to report the set stale", func() bool {
				_, _, stale, _ := c.Snapshot(service)
				return stale
			})
			got, err := c.Resolve(context.Background(), service)
			switch {
			case tc.wantStale && err != nil:
				t.Errorf("Resolve during the outage: %v; want the last set", err)
			case tc.wantStale:
				wantIDs(t, "Resolve during the outage", ids(got), "a")
			case !errors.Is(err, discovery.ErrUnavailable):
				t.Errorf("Resolve during the outage = %v, %v; want an error wrapping discovery.ErrUnavailable", got, err)
			}

			e.Store.SetAvailable(true)
			testwait.Until(t, waitLong, "Snapshot to be fresh again", func() bool {
				_, age, stale, _ := c.Snapshot(service)
				return !stale && age == 0
			})
			wantIDs(t, "Resolve after the outage", resolveIDs(t, c), "a")
			if got := e.Up.Watches(); got != 1 {
				t.Errorf("upstream Watch called %d times, want 1", got)
			}
		})
	}
}

func TestFirstResolveWhileUpstreamDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Register(t, inst("a", 1))
	e.Store.SetAvailable(false)
	c := e.newCache(t, cache.WithStaleOnError(0))

	start := time.Now()
	_, err := c.Resolve(context.Background(), service)
	if !errors.Is(err, memory.ErrUnavailable) {
		t.Fatalf("Resolve with the upstream down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Resolve took %v to report the failure, want it at the first failure", d)
	}
	if _, _, _, ok := c.Snapshot(service); ok {
		t.Error("Snapshot ok before any set was known")
	}

	e.Store.SetAvailable(true)
	testwait.Until(t, waitLong, "Resolve to succeed once the upstream is back", func() bool {
		set, err := c.Resolve(context.Background(), service)
		return err == nil && len(set) == 1
	})
}

func TestResolveWaitsWithinContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		feed := backendkit.NewFeed() // never published: the first set never comes
		defer feed.Close(nil)
		c := mustNew(t, resolvertest.Feed{Feed: feed})
		defer c.Close()

		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		defer cancel()
		_, err := c.Resolve(ctx, service)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Resolve = %v, want DeadlineExceeded", err)
		}

		errc := make(chan error, 1)
		go func() {
			_, err := c.Resolve(context.Background(), service)
			errc <- err
		}()
		synctest.Wait() // the Resolve is pending
		c.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, discovery.ErrClosed) {
				t.Errorf("Resolve pending during Close = %v, want ErrClosed", err)
			}
		case <-time.After(waitLong):
			t.Fatal("Close did not unblock a pending Resolve")
		}
	})
}

func TestEmptyHold(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const hold = 150 * time.Millisecond
		e, a, c, w := holding(t, hold)

		e.Deregister(t, a)
		gone := time.Now()
		if set, err := nextWithin(w, hold/2); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next within the hold = %v, %v; want no change", set, err)
		}
		wantIDs(t, "Resolve during the hold", resolveIDs(t, c), "a")
		if _, age, stale, _ := c.Snapshot(service); stale || age <= 0 {
			t.Errorf("Snapshot during the hold: age %v, stale %v; want a growing age, not stale", age, stale)
		}

		wantEmptyAfter(t, w, gone, hold, "the last instance left")
		wantIDs(t, "Resolve after the hold", resolveIDs(t, c))
		if _, age, _, _ := c.Snapshot(service); age != 0 {
			t.Errorf("Snapshot age after the hold = %v, want 0", age)
		}

		// An empty set that was published is not held again; a new instance
		// is published at once.
		e.Register(t, a)
		if set, err := nextWithin(w, waitLong); err != nil || len(set) != 1 {
			t.Fatalf("Next after re-register = %v, %v", set, err)
		}
	})
}

// TestEmptyHoldAcrossOutage: an outage interrupts an empty hold, which
// starts again once the registry is back; meanwhile watchers get the held
// set again, fresh.
func TestEmptyHoldAcrossOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const hold = 150 * time.Millisecond
		e, a, c, w := holding(t, hold)

		e.Deregister(t, a)
		testwait.Until(t, waitLong, "the hold to start", func() bool {
			_, age, _, _ := c.Snapshot(service)
			return age > 0
		})
		e.Store.SetAvailable(false)
		if _, err := nextWithin(w, waitLong); !errors.Is(err, discovery.ErrUnavailable) {
			t.Fatalf("Next during the outage = %v, want ErrUnavailable", err)
		}
		// The bubble's clock runs past the hold; synctest.Wait lets every
		// goroutine woken at its end (the hold's timer) finish its work
		// before the check, so that the check is exact.
		time.Sleep(hold)
		synctest.Wait()
		set, _, stale, _ := c.Snapshot(service)
		wantIDs(t, "Snapshot during the outage", ids(set), "a")
		if !stale {
			t.Error("Snapshot during the outage: not stale")
		}

		e.Store.SetAvailable(true)
		back := time.Now()
		set, err := nextWithin(w, waitLong)
		if err != nil {
			t.Fatalf("Next after the outage: %v", err)
		}
		wantIDs(t, "Next after the outage, the hold starting again", ids(set), "a")
		wantIDs(t, "Resolve during the new hold", resolveIDs(t, c), "a")
		if _, _, stale, _ := c.Snapshot(service); stale {
			t.Error("Snapshot after the outage: stale, want fresh (holding)")
		}
		wantEmptyAfter(t, w, back, hold, "the outage")
	})
}

func TestEmptyHoldCancelledByReRegister(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const hold = 250 * time.Millisecond
		e, a, _, w := holding(t, hold)

		// Leave and come back within the hold, at a new address.
		e.Deregister(t, a)
		time.Sleep(10 * time.Millisecond) // the bubble's clock: 10ms into the hold
		moved := inst("a", 2)
		e.Register(t, moved)
		set, err := nextWithin(w, waitLong)
		if err != nil {
			t.Fatal(err)
		}
		if len(set) != 1 || set[0].Address != moved.Address {
			t.Fatalf("Next after re-register = %v, want the moved instance and never an empty set", set)
		}
		// The hold is over: no empty set comes later either.
		if set, err := nextWithin(w, hold+quiet); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next after the hold = %v, %v; want no change", set, err)
		}
	})
}

func TestCloseUnblocksWatchers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.Register(t, inst("a", 1))
		c := mustNew(t, e.Up, cache.WithRetry(fastRetry))
		w, _ := watchFirst(t, c)
		testwait.Until(t, waitLong, "the upstream watch to start", func() bool { return e.Up.ActiveWatchers() == 1 })

		errc := make(chan error, 1)
		go func() {
			_, err := w.Next(context.Background())
			errc <- err
		}()
		synctest.Wait() // the Next is pending
		if err := c.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, discovery.ErrClosed) {
				t.Errorf("pending Next after Close = %v, want ErrClosed", err)
			}
		case <-time.After(waitLong):
			t.Fatal("Close did not unblock a pending Next")
		}
		if n := e.Up.ActiveWatchers(); n != 0 {
			t.Errorf("%d upstream watchers still open after Close, want 0", n)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
		if _, err := c.Resolve(context.Background(), service); !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("Resolve after Close = %v, want ErrClosed", err)
		}
		if _, err := c.Watch(context.Background(), service); !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("Watch after Close = %v, want ErrClosed", err)
		}
		if _, err := w.Next(context.Background()); !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("Next after Close = %v, want ErrClosed", err)
		}
		if _, _, _, ok := c.Snapshot(service); ok {
			t.Error("Snapshot after Close: ok, want not ok")
		}
	})
}

func TestCloseWhileRetrying(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Up.FailWatch(errBroken)
	// A retry policy of an hour: Close must cut the wait short.
	c := mustNew(t, e.Up, cache.WithRetry(retry.Policy{Base: time.Hour, Max: time.Hour}))
	if _, err := c.Resolve(context.Background(), service); !errors.Is(err, errBroken) {
		t.Fatalf("Resolve = %v, want the upstream's error", err)
	}
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Close blocked on a retry wait")
	}
}

func TestConcurrentResolve(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Register(t, inst("a", 1), inst("b", 2))
	if err := e.Reg.Register(context.Background(), discovery.Instance{Service: "other", ID: "x", Address: "10.0.0.2:1"}); err != nil {
		t.Fatal(err)
	}
	c := e.newCache(t)

	const goroutines = 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := make(chan struct{})
	for i := range goroutines {
		wg.Go(func() {
			<-start
			svc := service
			if i%5 == 0 {
				svc = "other"
			}
			for range 50 {
				set, err := c.Resolve(context.Background(), svc)
				if err != nil {
					errs <- err
					return
				}
				if len(set) == 0 {
					errs <- fmt.Errorf("Resolve(%s) returned an empty set", svc)
					return
				}
				set[0].Metadata = map[string]string{"mine": "yes"} // results are the caller's
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.Up.Watches(); got != 2 {
		t.Errorf("upstream Watch called %d times for 2 services, want 2", got)
	}
	if got := e.Up.Resolves(); got != 0 {
		t.Errorf("upstream Resolve called %d times, want 0", got)
	}
}

func TestInvalidService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.newCache(t)
	cases := []string{"", "a/b", "..", "has space"}
	for _, svc := range cases {
		_, err := c.Resolve(context.Background(), svc)
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != "Service" {
			t.Errorf("Resolve(%q) = %v, want ErrInvalidInstance on field Service", svc, err)
		}
		if _, err := c.Watch(context.Background(), svc); !errors.Is(err, discovery.ErrInvalidInstance) {
			t.Errorf("Watch(%q) = %v, want ErrInvalidInstance", svc, err)
		}
	}
	if got := e.Up.Watches(); got != 0 {
		t.Errorf("upstream Watch called %d times for invalid names, want 0", got)
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name       string
		upstream   discovery.Resolver
		opt        cache.Option
		wantName   string // the argument or option the error names
		wantReason string // and the reason it gives
		wantPolicy bool   // the error wraps retry.ErrInvalidPolicy
	}{
		{"nil upstream", nil, cache.WithLogger(nil), "upstream", "nil", false},
		{"negative max age", e.Up, cache.WithStaleOnError(-time.Second), "WithStaleOnError", "-1s", false},
		{"negative empty hold", e.Up, cache.WithEmptyHold(-time.Second), "WithEmptyHold", "-1s", false},
		{"invalid retry policy", e.Up, cache.WithRetry(retry.Policy{Jitter: 2}), "WithRetry", "Jitter", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// goleak (TestMain) checks that nothing was started.
			c, err := cache.New(tc.upstream, tc.opt)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded, want an error")
			}
			if c != nil {
				t.Error("New returned a Resolver with its error")
			}
			if !errors.Is(err, cache.ErrInvalidOption) {
				t.Errorf("New = %v, want an error wrapping ErrInvalidOption", err)
			}
			if got := errors.Is(err, retry.ErrInvalidPolicy); got != tc.wantPolicy {
				t.Errorf("errors.Is(%v, retry.ErrInvalidPolicy) = %v, want %v", err, got, tc.wantPolicy)
			}
			for _, want := range []string{tc.wantName, tc.wantReason} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New = %q, want it to mention %q", err, want)
				}
			}
		})
	}
	if got := e.Up.Watches() + e.Up.Resolves(); got != 0 {
		t.Errorf("upstream called %d times by failed News, want 0", got)
	}
}

func TestNewIgnoresNilOption(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Register(t, inst("a", 1))
	c := e.newCache(t, nil)
	wantIDs(t, "Resolve", resolveIDs(t, c), "a")
}

func TestViewSharesTheCachedSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.Register(t, inst("b", 2), inst("a", 1))
	c := e.newCache(t)
	ctx := context.Background()

	var first []discovery.Instance
	if err := c.View(ctx, service, func(set []discovery.Instance) { first = set }); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "View", ids(first), "a", "b")
	var second []discovery.Instance
	_ = c.View(ctx, service, func(set []discovery.Instance) { second = set })
	if &first[0] != &second[0] {
		t.Errorf("View copied the set; want the shared one")
	}
	// A change replaces the set; the one seen before stays as it was.
	e.Register(t, inst("c", 3))
	testwait.Until(t, waitLong, "View to see the change", func() bool {
		var got []string
		_ = c.View(ctx, service, func(set []discovery.Instance) { got = ids(set) })
		return fmt.Sprint(got) == "[a b c]"
	})
	wantIDs(t, "the set seen before the change", ids(first), "a", "b")
	if got := e.Up.Resolves(); got != 0 {
		t.Errorf("upstream Resolve called %d times, want 0", got)
	}

	called := false
	err := c.View(ctx, "bad/name", func([]discovery.Instance) { called = true })
	if !errors.Is(err, discovery.ErrInvalidInstance) || called {
		t.Errorf("View(bad name) = %v (fn called: %v); want ErrInvalidInstance and no call", err, called)
	}
	c.Close()
	if err := c.View(ctx, service, func([]discovery.Instance) { called = true }); !errors.Is(err, discovery.ErrClosed) || called {
		t.Errorf("View after Close = %v (fn called: %v); want ErrClosed and no call", err, called)
	}
}

func TestServicesListsFollowedServices(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.newCache(t)
	if got := c.Services(); len(got) != 0 {
		t.Errorf("Services before any call = %v, want none", got)
	}
	resolveIDs(t, c)
	if _, err := c.Resolve(context.Background(), "alpha"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(context.Background(), "zulu")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if got, want := c.Services(), []string{"alpha", service, "zulu"}; !slices.Equal(got, want) {
		t.Errorf("Services = %v, want %v", got, want)
	}
	c.Close()
	if got := c.Services(); len(got) != 0 {
		t.Errorf("Services after Close = %v, want none", got)
	}
}

// TestRevisionsPassThrough: over an upstream that tells revisions (the
// memory backend), the cache's Resolve and watchers give each set with the
// upstream's revision (discovery.RevisionResolver), so that grpcresolver
// over a cache can order sets as it does over the backend.
func TestRevisionsPassThrough(t *testing.T) {
	t.Parallel()
	b, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c := mustNew(t, b, cache.WithLogger(testLogger(t)))
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := b.Register(ctx, inst("a", 1)); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, service)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rw := w.(discovery.RevisionWatcher)
	for _, step := range []func() error{
		func() error { return nil },
		func() error { return b.Register(ctx, inst("b", 2)) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		_, want, err := b.ResolveRevision(ctx, service)
		if err != nil {
			t.Fatal(err)
		}
		set, got, err := rw.NextRevision(ctx)
		for err == nil && got < want { // an earlier set may come first
			set, got, err = rw.NextRevision(ctx)
		}
		if err != nil || got != want {
			t.Fatalf("cache watcher = %v at %d, %v; want revision %d", ids(set), got, err, want)
		}
		if _, rrev, err := c.ResolveRevision(ctx, service); err != nil || rrev != want {
			t.Fatalf("cache ResolveRevision revision = %d, %v; want %d", rrev, err, want)
		}
	}
}
