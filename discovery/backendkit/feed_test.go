package backendkit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// waitLong bounds every wait for something that must happen; blocked is
// how long a test waits to see that something does not happen.
const (
	waitLong = 5 * time.Second
	blocked  = 30 * time.Millisecond
)

// ids returns a set of instances of service "s" with the given IDs.
func ids(id ...string) []discovery.Instance {
	out := make([]discovery.Instance, 0, len(id))
	for _, i := range id {
		out = append(out, inst("s", i))
	}
	return out
}

// versioned returns a one-instance set whose metadata records version n.
func versioned(n int) []discovery.Instance {
	return []discovery.Instance{{
		Service:  "s",
		ID:       "v",
		Address:  "10.0.0.7:8080",
		Metadata: map[string]string{"version": strconv.Itoa(n)},
	}}
}

func versionOf(t *testing.T, set []discovery.Instance) int {
	t.Helper()
	if len(set) != 1 {
		t.Fatalf("set = %+v, want one instance", set)
	}
	n, err := strconv.Atoi(set[0].Metadata["version"])
	if err != nil {
		t.Fatalf("set = %+v: %v", set, err)
	}
	return n
}

type nextResult struct {
	set []discovery.Instance
	err error
}

// goNext calls w.Next on a new goroutine; the result arrives on the channel.
func goNext(ctx context.Context, w discovery.Watcher) <-chan nextResult {
	ch := make(chan nextResult, 1)
	go func() {
		set, err := w.Next(ctx)
		ch <- nextResult{set, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan nextResult) nextResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLong):
		t.Fatalf("Next did not return within %v", waitLong)
		return nextResult{}
	}
}

func notReceived(t *testing.T, ch <-chan nextResult) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Next returned (%+v, %v), want it to block", r.set, r.err)
	case <-time.After(blocked):
	}
}

// nextWithin calls w.Next with a short deadline, for a Next that should
// either return at once or block.
func nextWithin(w discovery.Watcher, d time.Duration) ([]discovery.Instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Next(ctx)
}

func TestFeedFirstNextWaitsForFirstPublish(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()

	if _, ok := f.Current(); ok {
		t.Errorf("Current() reports a set before the first Publish")
	}
	ch := goNext(context.Background(), w)
	notReceived(t, ch)
	if !f.Publish(ids("b", "a")) {
		t.Errorf("first Publish() = false, want true")
	}
	r := receive(t, ch)
	if r.err != nil {
		t.Fatalf("Next() error = %v", r.err)
	}
	if got, want := r.set, ids("a", "b"); !discovery.EqualSets(got, want) {
		t.Errorf("Next() = %v, want %v", keys(got), keys(want))
	}
}

func TestFeedFirstPublishOfEmptySet(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	if !f.Publish(nil) {
		t.Errorf("first Publish(nil) = false, want true: the first set is news even when empty")
	}
	got, err := nextWithin(w, waitLong)
	if err != nil {
		t.Fatalf("Next() error = %v", err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("Next() = %#v, want an empty non-nil set", got)
	}
	if f.Publish([]discovery.Instance{}) {
		t.Errorf("Publish(empty) after Publish(nil) = true, want false")
	}
}

func TestFeedNextReturnsCurrentSetToNewWatcher(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	f.Publish(ids("a"))
	f.Publish(ids("a", "b"))
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	got, err := nextWithin(w, waitLong)
	if err != nil {
		t.Fatalf("Next() error = %v", err)
	}
	if want := ids("a", "b"); !discovery.EqualSets(got, want) {
		t.Errorf("Next() = %v, want %v", keys(got), keys(want))
	}
	cur, ok := f.Current()
	if !ok || !discovery.EqualSets(cur, got) {
		t.Errorf("Current() = %v, %v; want %v, true", keys(cur), ok, keys(got))
	}
}

func TestFeedEqualPublishDoesNotWake(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	f.Publish(ids("a", "b"))
	if _, err := nextWithin(w, waitLong); err != nil {
		t.Fatalf("Next() error = %v", err)
	}

	ch := goNext(context.Background(), w)
	cases := []struct {
		name string
		set  []discovery.Instance
	}{
		{"same", ids("a", "b")},
		{"other order", ids("b", "a")},
		{"with duplicate", ids("b", "a", "b")},
	}
	for _, tc := range cases {
		if f.Publish(tc.set) {
			t.Errorf("Publish(%s) = true, want false for an equal set", tc.name)
		}
	}
	notReceived(t, ch)

	f.Publish(ids("a"))
	r := receive(t, ch)
	if r.err != nil || !discovery.EqualSets(r.set, ids("a")) {
		t.Errorf("Next() = %v, %v; want [s/a], nil", keys(r.set), r.err)
	}
}

func TestFeedCoalescesForSlowReader(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	const n = 1000
	for i := 1; i <= n; i++ {
		f.Publish(versioned(i))
	}
	got, err := nextWithin(w, waitLong)
	if err != nil {
		t.Fatalf("Next() error = %v", err)
	}
	if v := versionOf(t, got); v != n {
		t.Errorf("Next() returned version %d, want %d", v, n)
	}
	if got, err := nextWithin(w, blocked); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Next() = %v, %v; want it to block until the deadline", got, err)
	}
}

func TestFeedReturnsCopies(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	in := versioned(1)
	f.Publish(in)
	in[0].Metadata["version"] = "mutated input"

	w1, w2 := f.NewWatcher(context.Background(), nil), f.NewWatcher(context.Background(), nil)
	defer w1.Stop()
	defer w2.Stop()
	got1, err := nextWithin(w1, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	got1[0].Metadata["version"] = "mutated output"
	got2, err := nextWithin(w2, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	if v := versionOf(t, got2); v != 1 {
		t.Errorf("second watcher got version %d, want 1", v)
	}
	cur, _ := f.Current()
	if v := versionOf(t, cur); v != 1 {
		t.Errorf("Current() version %d, want 1", v)
	}
}

func TestFeedNextUnblocks(t *testing.T) {
	t.Parallel()
	customErr := fmt.Errorf("backend closed: %w", discovery.ErrClosed)
	cases := []struct {
		name    string
		unblock func(f *backendkit.Feed, w discovery.Watcher, cancel context.CancelFunc)
		want    error
		// wantExact: Next returns exactly this error value.
		wantExact bool
	}{
		{"stop", func(_ *backendkit.Feed, w discovery.Watcher, _ context.CancelFunc) { w.Stop() }, discovery.ErrClosed, false},
		{"cancel", func(_ *backendkit.Feed, _ discovery.Watcher, cancel context.CancelFunc) { cancel() }, context.Canceled, true},
		{"close nil", func(f *backendkit.Feed, _ discovery.Watcher, _ context.CancelFunc) { f.Close(nil) }, discovery.ErrClosed, true},
		{"close err", func(f *backendkit.Feed, _ discovery.Watcher, _ context.CancelFunc) { f.Close(customErr) }, customErr, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := backendkit.NewFeed()
			w := f.NewWatcher(context.Background(), nil)
			defer w.Stop()
			f.Publish(ids("a"))
			if _, err := nextWithin(w, waitLong); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := goNext(ctx, w)
			notReceived(t, ch)
			tc.unblock(f, w, cancel)
			r := receive(t, ch)
			if !errors.Is(r.err, tc.want) {
				t.Errorf("Next() error = %v, want %v", r.err, tc.want)
			}
			if tc.wantExact && r.err != tc.want {
				t.Errorf("Next() error = %#v, want exactly %#v", r.err, tc.want)
			}
			if r.set != nil {
				t.Errorf("Next() set = %v, want nil with an error", keys(r.set))
			}
			// The state is sticky, except for a cancelled ctx.
			if tc.name != "cancel" {
				if _, err := nextWithin(w, waitLong); !errors.Is(err, tc.want) {
					t.Errorf("later Next() error = %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestFeedNextBeforeFirstPublishUnblocksOnStop(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	w := f.NewWatcher(context.Background(), nil)
	ch := goNext(context.Background(), w)
	notReceived(t, ch)
	w.Stop()
	if r := receive(t, ch); !errors.Is(r.err, discovery.ErrClosed) {
		t.Errorf("Next() error = %v, want ErrClosed", r.err)
	}
}

func TestFeedClose(t *testing.T) {
	t.Parallel()
	first := fmt.Errorf("first: %w", discovery.ErrClosed)
	second := fmt.Errorf("second: %w", discovery.ErrClosed)
	f := backendkit.NewFeed()
	f.Publish(ids("a"))
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	f.Close(first)
	f.Close(second)
	f.Close(nil)
	if _, err := nextWithin(w, waitLong); err != first {
		t.Errorf("Next() error = %v, want the first Close error %v", err, first)
	}
	if f.Publish(ids("b")) {
		t.Errorf("Publish after Close = true, want false")
	}
	if got, ok := f.Current(); !ok || !discovery.EqualSets(got, ids("a")) {
		t.Errorf("Current() after Close = %v, %v; want [s/a], true", keys(got), ok)
	}
	// A watcher made after Close sees the error too.
	late := f.NewWatcher(context.Background(), nil)
	defer late.Stop()
	if _, err := nextWithin(late, waitLong); err != first {
		t.Errorf("Next() on a late watcher error = %v, want %v", err, first)
	}
}

func TestFeedStopRunsOnStopOnce(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	var calls atomic.Int32
	w := f.NewWatcher(context.Background(), func() { calls.Add(1) })
	other := f.NewWatcher(context.Background(), nil)
	defer other.Stop()

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(w.Stop)
	}
	wg.Wait()
	w.Stop()
	if got, want := calls.Load(), int32(1); got != want {
		t.Errorf("onStop ran %d times, want %d", got, want)
	}
	if _, err := nextWithin(w, waitLong); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next() after Stop error = %v, want ErrClosed", err)
	}
	// Stopping one watcher leaves the others working.
	f.Publish(ids("a"))
	if got, err := nextWithin(other, waitLong); err != nil || !discovery.EqualSets(got, ids("a")) {
		t.Errorf("other watcher Next() = %v, %v; want [s/a], nil", keys(got), err)
	}
}

// TestFeedWatcherEndsWithItsContext: the end of the context given to
// NewWatcher stops the watcher as Stop does, with the context's cause in
// Next's error, and runs onStop once, even if Stop follows.
func TestFeedWatcherEndsWithItsContext(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	f.Publish(ids("a"))
	ctx, cancel := context.WithCancelCause(context.Background())
	stopped := make(chan struct{}, 2)
	w := f.NewWatcher(ctx, func() { stopped <- struct{}{} })
	if _, err := nextWithin(w, waitLong); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background())
		done <- err
	}()
	errGone := errors.New("client gone")
	cancel(errGone)
	select {
	case err := <-done:
		if !errors.Is(err, discovery.ErrClosed) || !errors.Is(err, errGone) {
			t.Errorf("Next when the watcher's context ended = %v; want an error wrapping ErrClosed and the cause", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Next did not return when the watcher's context ended")
	}
	select {
	case <-stopped:
	case <-time.After(waitLong):
		t.Fatal("onStop did not run when the watcher's context ended")
	}
	w.Stop()
	if len(stopped) != 0 {
		t.Error("onStop ran again on a later Stop")
	}

	// A watcher stopped before its context ends says nothing of the context.
	ctx2, cancel2 := context.WithCancel(context.Background())
	w2 := f.NewWatcher(ctx2, nil)
	w2.Stop()
	cancel2()
	if _, err := w2.Next(context.Background()); !errors.Is(err, discovery.ErrClosed) || errors.Is(err, context.Canceled) {
		t.Errorf("Next after Stop, then the end of the context = %v; want ErrClosed alone", err)
	}
}

// TestFeedConcurrent runs publishers and watchers together under -race:
// every watcher sees versions in increasing order and ends at the last one.
func TestFeedConcurrent(t *testing.T) {
	t.Parallel()
	const (
		publishers   = 4
		perPublisher = 250
		watchers     = 6
		final        = publishers * perPublisher
	)
	f := backendkit.NewFeed()

	// Publishers take versions from one counter and publish them in that
	// order, so the feed's order is the version order; the lock serializes
	// only the publishers, not the watchers.
	var (
		pubMu   sync.Mutex
		version int
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	seen := make([][]int, watchers)
	errs := make([]error, watchers)
	for i := range watchers {
		w := f.NewWatcher(context.Background(), nil)
		wg.Go(func() {
			defer w.Stop()
			for {
				set, err := w.Next(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				n, err := strconv.Atoi(set[0].Metadata["version"])
				if err != nil {
					errs[i] = err
					return
				}
				seen[i] = append(seen[i], n)
				if n == final {
					return
				}
			}
		})
	}
	for range publishers {
		wg.Go(func() {
			for range perPublisher {
				pubMu.Lock()
				version++
				f.Publish(versioned(version))
				pubMu.Unlock()
				f.Current() // reads race with publishes and watchers
			}
		})
	}
	wg.Wait()

	for i := range watchers {
		if errs[i] != nil {
			t.Errorf("watcher %d: %v (saw %d sets)", i, errs[i], len(seen[i]))
			continue
		}
		got := seen[i]
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("watcher %d saw versions out of order: %v", i, got)
		}
		if len(got) == 0 || got[len(got)-1] != final {
			t.Errorf("watcher %d ended at %v, want version %d", i, got[len(got)-1:], final)
		}
	}
}

func TestFeedFailReportsOutageOnceThenFreshSet(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	f.Publish(ids("a", "b"))
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	if set, err := nextWithin(w, time.Second); err != nil || len(set) != 2 {
		t.Fatalf("first Next = %v, %v", set, err)
	}
	cause := errors.New("connection refused")
	pending := goNext(context.Background(), w)
	f.Fail(cause)
	got := receive(t, pending)
	if !errors.Is(got.err, discovery.ErrUnavailable) || !errors.Is(got.err, cause) {
		t.Fatalf("Next during an outage = %v, %v; want ErrUnavailable wrapping the cause", got.set, got.err)
	}
	f.Fail(errors.New("again")) // same outage: not reported twice
	pending = goNext(context.Background(), w)
	notReceived(t, pending)
	f.Publish(ids("a", "b")) // the registry is back, nothing changed
	got = receive(t, pending)
	if got.err != nil || len(got.set) != 2 {
		t.Errorf("Next after the outage = %v, %v; want the same set again", got.set, got.err)
	}
	// A later equal Publish is not news again.
	pending = goNext(context.Background(), w)
	f.Publish(ids("b", "a"))
	notReceived(t, pending)
	w.Stop()
	<-pending
}

func TestFeedFailBeforeFirstSet(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	f.Fail(nil)
	w := f.NewWatcher(context.Background(), nil)
	defer w.Stop()
	if _, err := nextWithin(w, time.Second); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("Next = %v; want ErrUnavailable", err)
	}
	pending := goNext(context.Background(), w)
	notReceived(t, pending)
	f.Publish(nil)
	if got := receive(t, pending); got.err != nil || len(got.set) != 0 {
		t.Errorf("Next after recovery = %v, %v; want the empty set", got.set, got.err)
	}
	f.Close(nil)
	f.Fail(nil) // after Close: nothing
	if _, err := nextWithin(w, time.Second); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next after Close = %v; want ErrClosed", err)
	}
}

// TestFeedRevisions: a feed's watchers are discovery.RevisionWatchers that
// give each set with the revision it was published at, 0 for Publish.
func TestFeedRevisions(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	w, ok := f.NewWatcher(context.Background(), nil).(discovery.RevisionWatcher)
	if !ok {
		t.Fatal("a feed's watcher is not a discovery.RevisionWatcher")
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	next := func(wantKeys string, wantRev uint64) {
		t.Helper()
		set, rev, err := w.NextRevision(ctx)
		if err != nil || fmt.Sprint(keys(set)) != wantKeys || rev != wantRev {
			t.Fatalf("NextRevision = %v, %d, %v; want %s, %d", keys(set), rev, err, wantKeys, wantRev)
		}
	}
	f.PublishAt([]discovery.Instance{inst("s", "a")}, 5)
	next("[s/a]", 5)
	f.PublishAt([]discovery.Instance{inst("s", "a")}, 7) // same set: recorded, nobody woken
	f.PublishAt([]discovery.Instance{inst("s", "a"), inst("s", "b")}, 9)
	next("[s/a s/b]", 9)
	f.Publish([]discovery.Instance{inst("s", "b")})
	next("[s/b]", 0)
}

// TestFeedResetReportedBeforeTheNewHistory: a Reset (the registry started
// a new history) reaches every watcher as an outage before any later set,
// even when a set was published before the watcher looked, which a Fail
// does not guarantee; once, however many Resets and Fails came.
func TestFeedResetReportedBeforeTheNewHistory(t *testing.T) {
	t.Parallel()
	f := backendkit.NewFeed()
	f.PublishAt(ids("a", "b"), 90)
	w := f.NewWatcher(context.Background(), nil).(discovery.RevisionWatcher)
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if set, rev, err := w.NextRevision(ctx); err != nil || len(set) != 2 || rev != 90 {
		t.Fatalf("first NextRevision = %v, %d, %v", set, rev, err)
	}
	cause := errors.New("bucket deleted")
	f.Reset(cause)
	f.Fail(errors.New("down"))
	f.Reset(cause)
	f.PublishAt(ids("a"), 3) // the new history's first set, before the watcher looks
	if _, _, err := w.NextRevision(ctx); !errors.Is(err, discovery.ErrUnavailable) || !errors.Is(err, cause) {
		t.Fatalf("NextRevision after Reset = %v; want ErrUnavailable wrapping the cause", err)
	}
	if set, rev, err := w.NextRevision(ctx); err != nil || len(set) != 1 || rev != 3 {
		t.Fatalf("NextRevision after the outage = %v, %d, %v; want the new history's set at 3", set, rev, err)
	}
	// A watcher made after the Reset starts in the new history.
	late := f.NewWatcher(context.Background(), nil).(discovery.RevisionWatcher)
	defer late.Stop()
	if set, rev, err := late.NextRevision(ctx); err != nil || len(set) != 1 || rev != 3 {
		t.Errorf("a later watcher's first NextRevision = %v, %d, %v; want the set at 3", set, rev, err)
	}
	// A Fail followed by a Publish before the watcher looks is coalesced,
	// as before.
	f.Fail(nil)
	f.PublishAt(ids("a", "c"), 5)
	if set, rev, err := w.NextRevision(ctx); err != nil || len(set) != 2 || rev != 5 {
		t.Errorf("NextRevision after a Fail and a Publish = %v, %d, %v; want the set at 5", set, rev, err)
	}
	f.Close(nil)
	f.Reset(cause) // after Close: nothing
	if _, _, err := w.NextRevision(ctx); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("NextRevision after Close = %v; want ErrClosed", err)
	}
}
