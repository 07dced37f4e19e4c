package backendkit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// hooks records the calls of a FeedGroup's start hook and of the stop
// funcs it returns.
type hooks struct {
	mu     sync.Mutex
	starts []string
	stops  []string
	feeds  map[string][]*backendkit.Feed // every feed start was given, by service
}

func newHooks() *hooks { return &hooks{feeds: make(map[string][]*backendkit.Feed)} }

func (h *hooks) start(service string, f *backendkit.Feed) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts = append(h.starts, service)
	h.feeds[service] = append(h.feeds[service], f)
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.stops = append(h.stops, service)
	}
}

func (h *hooks) counts() (starts, stops []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.starts), slices.Clone(h.stops)
}

func wantCalls(t *testing.T, h *hooks, wantStarts, wantStops []string) {
	t.Helper()
	starts, stops := h.counts()
	if !slices.Equal(starts, wantStarts) || !slices.Equal(stops, wantStops) {
		t.Fatalf("start called for %q, stop for %q; want %q and %q", starts, stops, wantStarts, wantStops)
	}
}

// watch returns a watcher of service on g, stopped when the test ends.
func watch(t *testing.T, g *backendkit.FeedGroup, service string) discovery.Watcher {
	t.Helper()
	w := g.Watch(context.Background(), service, nil)
	t.Cleanup(w.Stop)
	return w
}

func TestFeedGroupSharesOneFeedPerService(t *testing.T) {
	t.Parallel()
	h := newHooks()
	g := backendkit.NewFeedGroup(h.start)
	a1, a2, b1 := watch(t, g, "a"), watch(t, g, "a"), watch(t, g, "b")
	wantCalls(t, h, []string{"a", "b"}, nil)

	fa, ok := g.Feed("a")
	if !ok || fa != h.feeds["a"][0] {
		t.Fatalf("Feed(a) = %p, %v; want the feed start was given, %p", fa, ok, h.feeds["a"][0])
	}
	if _, ok := g.Feed("c"); ok {
		t.Errorf("Feed(c) ok = true for a service nobody watches")
	}

	// Both watchers of a see what is published on a's feed; b's does not.
	fa.Publish(ids("x"))
	for i, w := range []discovery.Watcher{a1, a2} {
		if got, err := nextWithin(w, waitLong); err != nil || !discovery.EqualSets(got, ids("x")) {
			t.Errorf("watcher %d of a: Next() = %v, %v; want [s/x], nil", i, keys(got), err)
		}
	}
	if got, err := nextWithin(b1, blocked); err == nil {
		t.Errorf("watcher of b: Next() = %v, want it to wait for b's first set", keys(got))
	}
}

func TestFeedGroupStartCanPublishFirstSet(t *testing.T) {
	t.Parallel()
	g := backendkit.NewFeedGroup(func(service string, f *backendkit.Feed) func() {
		f.Publish([]discovery.Instance{inst(service, "first")})
		return nil
	})
	w := watch(t, g, "s")
	if got, err := nextWithin(w, waitLong); err != nil || !discovery.EqualSets(got, ids("first")) {
		t.Errorf("Next() = %v, %v; want [s/first], nil at once", keys(got), err)
	}
}

func TestFeedGroupDropsFeedWithLastWatcher(t *testing.T) {
	t.Parallel()
	h := newHooks()
	g := backendkit.NewFeedGroup(h.start)
	var onStops []string
	onStop := func(name string) func() {
		return func() {
			// onStop runs without the group's lock and after the release.
			_, live := g.Feed("s")
			onStops = append(onStops, name+":"+strconv.FormatBool(live))
		}
	}
	w1 := g.Watch(context.Background(), "s", onStop("w1"))
	w2 := g.Watch(context.Background(), "s", onStop("w2"))
	first := h.feeds["s"][0]

	w1.Stop()
	w1.Stop() // a second Stop releases nothing more
	wantCalls(t, h, []string{"s"}, nil)
	if f, ok := g.Feed("s"); !ok || f != first {
		t.Fatalf("Feed(s) after one of two watchers stopped = %p, %v; want %p, true", f, ok, first)
	}
	first.Publish(ids("a"))
	if got, err := nextWithin(w2, waitLong); err != nil || !discovery.EqualSets(got, ids("a")) {
		t.Errorf("remaining watcher Next() = %v, %v; want [s/a], nil", keys(got), err)
	}

	w2.Stop()
	wantCalls(t, h, []string{"s"}, []string{"s"})
	if _, ok := g.Feed("s"); ok {
		t.Errorf("Feed(s) ok = true after the last watcher stopped")
	}
	if first.Publish(ids("b")) {
		t.Errorf("Publish on a dropped feed = true, want false: the feed should be closed")
	}
	if want := []string{"w1:true", "w2:false"}; !slices.Equal(onStops, want) {
		t.Errorf("onStop calls = %q, want %q", onStops, want)
	}

	// The next watcher starts over with a new feed.
	watch(t, g, "s")
	wantCalls(t, h, []string{"s", "s"}, []string{"s"})
	if f, _ := g.Feed("s"); f == first || f != h.feeds["s"][1] {
		t.Errorf("Feed(s) after a new first watcher = %p; want the new feed %p", f, h.feeds["s"][1])
	}
}

func TestFeedGroupNilHooks(t *testing.T) {
	t.Parallel()
	g := backendkit.NewFeedGroup(nil)
	w := g.Watch(context.Background(), "s", nil)
	f, ok := g.Feed("s")
	if !ok {
		t.Fatal("Feed(s) ok = false with a watcher")
	}
	f.Publish(ids("a"))
	if got, err := nextWithin(w, waitLong); err != nil || !discovery.EqualSets(got, ids("a")) {
		t.Errorf("Next() = %v, %v; want [s/a], nil", keys(got), err)
	}
	w.Stop()
	if _, ok := g.Feed("s"); ok {
		t.Error("Feed(s) ok = true after the last watcher stopped")
	}
	g.Close(nil)
}

func TestFeedGroupZeroValue(t *testing.T) {
	t.Parallel()
	var g backendkit.FeedGroup
	w := g.Watch(context.Background(), "s", nil)
	f, ok := g.Feed("s")
	if !ok {
		t.Fatal("Feed(s) ok = false with a watcher")
	}
	f.Publish(ids("a"))
	if got, err := nextWithin(w, waitLong); err != nil || !discovery.EqualSets(got, ids("a")) {
		t.Errorf("Next() = %v, %v; want [s/a], nil", keys(got), err)
	}
	g.Each(nil) // does nothing
	w.Stop()
	g.Close(nil)
}

func TestFeedGroupEach(t *testing.T) {
	t.Parallel()
	g := backendkit.NewFeedGroup(nil)
	watchers := make(map[string]discovery.Watcher)
	for _, service := range []string{"c", "a", "b"} {
		watchers[service] = watch(t, g, service)
	}
	gone := g.Watch(context.Background(), "gone", nil)
	gone.Stop()

	var visited []string
	g.Each(func(service string, f *backendkit.Feed) {
		// fn may call the group.
		if live, ok := g.Feed(service); !ok || live != f {
			t.Errorf("Each gave %s's feed %p, Feed(%s) = %p, %v", service, f, service, live, ok)
		}
		visited = append(visited, service)
		f.Fail(errors.New("down"))
	})
	if want := []string{"a", "b", "c"}; !slices.Equal(visited, want) {
		t.Errorf("Each visited %q, want %q", visited, want)
	}
	for _, service := range visited {
		if set, err := nextWithin(watchers[service], time.Second); !errors.Is(err, discovery.ErrUnavailable) {
			t.Errorf("watcher of %s: Next() = %v, %v; want ErrUnavailable", service, set, err)
		}
	}
}

func TestFeedGroupClose(t *testing.T) {
	t.Parallel()
	h := newHooks()
	g := backendkit.NewFeedGroup(h.start)
	a, b := watch(t, g, "a"), watch(t, g, "b")

	first := fmt.Errorf("first: %w", discovery.ErrClosed)
	g.Close(first)
	g.Close(errors.New("second"))
	wantCalls(t, h, []string{"a", "b"}, []string{"a", "b"})
	for name, w := range map[string]discovery.Watcher{"a": a, "b": b} {
		if _, err := nextWithin(w, waitLong); err != first {
			t.Errorf("watcher of %s: Next() error = %v, want the first Close error %v", name, err, first)
		}
	}
	if _, ok := g.Feed("a"); ok {
		t.Error("Feed(a) ok = true after Close")
	}
	g.Each(func(service string, _ *backendkit.Feed) { t.Errorf("Each visited %s after Close", service) })

	// Stopping after Close does not run stop again.
	a.Stop()
	wantCalls(t, h, []string{"a", "b"}, []string{"a", "b"})

	// A Watch after Close gets a closed watcher and starts nothing.
	stopped := false
	late := g.Watch(context.Background(), "a", func() { stopped = true })
	if _, err := nextWithin(late, waitLong); err != first {
		t.Errorf("watcher made after Close: Next() error = %v, want %v", err, first)
	}
	late.Stop()
	if !stopped {
		t.Error("Stop of a watcher made after Close did not run onStop")
	}
	wantCalls(t, h, []string{"a", "b"}, []string{"a", "b"})
}

func TestFeedGroupCloseNilIsErrClosed(t *testing.T) {
	t.Parallel()
	g := backendkit.NewFeedGroup(nil)
	w := watch(t, g, "s")
	g.Close(nil)
	if _, err := nextWithin(w, waitLong); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next() after Close(nil) error = %v, want ErrClosed", err)
	}
}

// TestFeedGroupHooksMayTakeCallerLocks shows the intended locking: the
// caller holds its own lock around Watch (start runs under it), and stop
// and onStop take that lock themselves.
func TestFeedGroupHooksMayTakeCallerLocks(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		running = map[string]bool{} // guarded by mu
		g       *backendkit.FeedGroup
	)
	g = backendkit.NewFeedGroup(func(service string, _ *backendkit.Feed) func() {
		running[service] = true // the caller of Watch holds mu
		return func() {
			mu.Lock()
			defer mu.Unlock()
			delete(running, service)
		}
	})
	mu.Lock()
	w := g.Watch(context.Background(), "s", func() {
		mu.Lock()
		defer mu.Unlock()
	})
	mu.Unlock()
	w.Stop()
	mu.Lock()
	defer mu.Unlock()
	if len(running) != 0 {
		t.Errorf("running = %v after the last watcher stopped, want none", running)
	}
}

// TestFeedGroupConcurrent watches and stops many services from many
// goroutines while others publish through Feed and Each, under -race:
// every start is matched by one stop and no feed outlives its watchers.
func TestFeedGroupConcurrent(t *testing.T) {
	t.Parallel()
	const (
		workers  = 8
		rounds   = 200
		services = 5
	)
	h := newHooks()
	g := backendkit.NewFeedGroup(h.start)
	done := make(chan struct{})
	var pubs sync.WaitGroup
	pubs.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			default:
			}
			g.Each(func(_ string, f *backendkit.Feed) { f.Publish(versioned(n)) })
			if f, ok := g.Feed("s" + strconv.Itoa(n%services)); ok {
				f.Fail(nil)
			}
		}
	})

	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			var held []discovery.Watcher
			for r := range rounds {
				held = append(held, g.Watch(context.Background(), "s"+strconv.Itoa((i+r)%services), nil))
				if r%3 == 2 {
					for _, w := range held {
						w.Stop()
					}
					held = held[:0]
				}
				if len(held) > 0 {
					nextWithin(held[0], 0) // watchers read while others come and go
				}
			}
			for _, w := range held {
				w.Stop()
			}
		})
	}
	wg.Wait()
	close(done)
	pubs.Wait()

	starts, stops := h.counts()
	if len(starts) == 0 || len(starts) != len(stops) {
		t.Errorf("start ran %d times, stop %d times; want equal and not zero", len(starts), len(stops))
	}
	g.Each(func(service string, _ *backendkit.Feed) {
		t.Errorf("feed of %s still live after every watcher stopped", service)
	})
	for service, feeds := range h.feeds {
		for _, f := range feeds {
			if f.Publish(ids("late")) {
				t.Errorf("a dropped feed of %s accepted a Publish: not closed", service)
			}
		}
	}
	g.Close(nil)
}
