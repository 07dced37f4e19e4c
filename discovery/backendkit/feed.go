package backendkit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/roster-sd/roster/discovery"
)

// Feed holds the latest instance set of one service and serves it to any
// number of [discovery.Watcher] values, coalescing changes: a watcher that falls behind gets
// the newest set on its next call, never a backlog and never a set older
// than one it has already seen. Publishing never blocks on a watcher.
//
// Backends keep one Feed per watched service, publish every set they learn
// and hand out Watchers from NewWatcher. All methods are safe for concurrent
// use. The zero value is not usable; call NewFeed.
type Feed struct {
	mu      sync.Mutex
	set     []discovery.Instance
	version uint64    // 0 until the first Publish
	rev     uint64    // registry revision of set, from PublishAt; 0 unknown
	changes Broadcast // wakes the watchers at every change
	err     error     // set by Close
	fault   error     // set by Fail, cleared by Publish
	faults  uint64    // counts Fail episodes
	resets  uint64    // counts Reset calls
	reset   error     // what the last Reset reported
}

// NewFeed returns a feed with no set yet: watchers' first Next waits for
// the first Publish.
func NewFeed() *Feed {
	return &Feed{}
}

// Publish makes set the current set. The feed stores a normalized deep copy
// (see [discovery.NormalizeSet]); a set equal to the current one is
// ignored after the first Publish, so watchers wake only for real changes.
// It reports whether the set changed. Publish after Close is ignored.
func (f *Feed) Publish(set []discovery.Instance) bool {
	return f.PublishAt(set, 0)
}

// PublishAt is Publish for a set read at the registry's revision rev (0 if
// unknown), which the feed's watchers report with the set (they implement
// [discovery.RevisionWatcher]). A set equal to the current one still
// records its revision, without waking the watchers.
func (f *Feed) PublishAt(set []discovery.Instance, rev uint64) bool {
	set = discovery.NormalizeSet(set)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false
	}
	if f.version > 0 && f.fault == nil && discovery.EqualSets(f.set, set) {
		f.rev = rev
		return false
	}
	f.set, f.rev = set, rev
	f.fault = nil
	f.version++
	f.wakeLocked()
	return true
}

// Fail records that the registry behind the feed is unreachable: every
// watcher's Next returns an error wrapping both [discovery.ErrUnavailable]
// and cause, once, and then waits. The next Publish ends the outage and is delivered
// to every watcher even if its set equals the last one. Fail during an
// outage, or after Close, does nothing.
func (f *Feed) Fail(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil || f.fault != nil {
		return
	}
	f.fault = outage(cause)
	f.faults++
	f.wakeLocked()
}

// outage is the error watchers get for an outage for cause.
func outage(cause error) error {
	switch {
	case cause == nil:
		return discovery.ErrUnavailable
	case errors.Is(cause, discovery.ErrUnavailable):
		return cause // already says so, e.g. passed on from an upstream
	default:
		return fmt.Errorf("%w: %w", discovery.ErrUnavailable, cause)
	}
}

// Reset records that the registry behind the feed started a new history
// (wiped, restored from a backup, its store deleted and made again), whose
// revisions restart and compare with none before. It is Fail, except that
// every watcher that exists now reports the outage (an error wrapping
// [discovery.ErrUnavailable] and cause) on its next call even if a set was
// published meanwhile, before that set: so that a client of revisions (see
// [discovery.RevisionResolver]) never compares the new history's with the
// old one's. A watcher reports one outage for any number of Resets and
// Fails it has not seen. Reset after Close does nothing.
func (f *Feed) Reset(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return
	}
	f.reset = outage(cause)
	f.resets++
	if f.fault == nil {
		f.fault = f.reset
		f.faults++
	}
	f.wakeLocked()
}

func (f *Feed) wakeLocked() { f.changes.Notify() }

// Current returns a copy of the current set and whether one has been
// published yet.
func (f *Feed) Current() ([]discovery.Instance, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return discovery.CloneSet(f.set), f.version > 0
}

// Close ends the feed: every watcher's Next returns err, which should wrap
// [discovery.ErrClosed] (nil means ErrClosed). Close is idempotent; the
// first error stays.
func (f *Feed) Close(err error) {
	if err == nil {
		err = discovery.ErrClosed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return
	}
	f.err = err
	f.changes.Close()
}

// NewWatcher returns a Watcher on the feed that lives until Stop or until
// ctx ends, whichever comes first; the end of ctx stops it as Stop does,
// and its Next then returns an error wrapping [discovery.ErrClosed] and
// ctx's cause.
// onStop, if not nil, runs once when the watcher stops, so a backend can
// release a shared watch when its last watcher goes.
func (f *Feed) NewWatcher(ctx context.Context, onStop func()) discovery.Watcher {
	w := &feedWatcher{feed: f, onStop: onStop, stopped: make(chan struct{})}
	f.mu.Lock()
	w.resets = f.resets // a watcher made after a Reset starts in the new history
	f.mu.Unlock()
	w.release = context.AfterFunc(ctx, func() { w.stop(context.Cause(ctx)) })
	return w
}

var _ discovery.RevisionWatcher = (*feedWatcher)(nil)

type feedWatcher struct {
	feed     *Feed
	onStop   func()
	release  func() bool // unregisters the stop on the end of ctx
	stopOnce sync.Once
	stopped  chan struct{}
	cause    error  // why the watcher stopped; nil for Stop; set before stopped closes
	seen     uint64 // version last returned by Next
	faults   uint64 // outages already reported by Next
	resets   uint64 // Resets already reported by Next
}

func (w *feedWatcher) Next(ctx context.Context) ([]discovery.Instance, error) {
	set, _, err := w.NextRevision(ctx)
	return set, err
}

// NextRevision implements discovery.RevisionWatcher: the revision is the
// one given to PublishAt with the set (0 for Publish).
func (w *feedWatcher) NextRevision(ctx context.Context) ([]discovery.Instance, uint64, error) {
	for {
		select {
		case <-w.stopped:
			return nil, 0, w.stoppedErr()
		default:
		}
		f := w.feed
		f.mu.Lock()
		version, set, rev, err, changed := f.version, f.set, f.rev, f.err, f.changes.Changed()
		fault, faults, resets, reset := f.fault, f.faults, f.resets, f.reset
		f.mu.Unlock()
		if err != nil {
			return nil, 0, err
		}
		if resets > w.resets {
			w.resets, w.faults = resets, faults
			return nil, 0, reset
		}
		if fault != nil && faults > w.faults {
			w.faults = faults
			return nil, 0, fault
		}
		if version > w.seen {
			w.seen = version
			return discovery.CloneSet(set), rev, nil
		}
		select {
		case <-changed:
		case <-w.stopped:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

func (w *feedWatcher) Stop() {
	w.release()
	w.stop(nil)
}

// stop ends the watcher once, for cause (nil for Stop).
func (w *feedWatcher) stop(cause error) {
	w.stopOnce.Do(func() {
		w.cause = cause
		close(w.stopped)
		if w.onStop != nil {
			w.onStop()
		}
	})
}

// stoppedErr is what Next returns once the watcher has stopped.
func (w *feedWatcher) stoppedErr() error {
	if w.cause != nil {
		return fmt.Errorf("watcher stopped: %w: %w", discovery.ErrClosed, w.cause)
	}
	return fmt.Errorf("watcher stopped: %w", discovery.ErrClosed)
}
