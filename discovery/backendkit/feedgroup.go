package backendkit

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/roster-sd/roster/discovery"
)

// FeedGroup keeps one Feed per watched service, shared by every Watcher of
// that service, and drops it when its last Watcher stops: the bookkeeping
// that sits between a backend's registry and its watchers. The backend
// hands out Watchers with Watch and publishes what it learns, or reports an
// outage, on the live feeds (Feed, Each).
//
// A backend that follows each watched service with a goroutine or a
// registry watch gives NewFeedGroup a start hook: it runs when a service
// gets its first Watcher, and the func it returns runs when the last one
// has stopped, or on Close.
//
// All methods are safe for concurrent use. The zero value is an empty
// group without a start hook, ready to use.
type FeedGroup struct {
	start func(service string, f *Feed) (stop func())

	mu     sync.Mutex
	feeds  map[string]*groupFeed // live feeds by service; made on first use, nil after Close
	closed error                 // set by Close
}

// groupFeed is the feed of one service and what the group knows of it.
// watchers is guarded by FeedGroup.mu.
type groupFeed struct {
	feed     *Feed
	stop     func() // from the start hook; may be nil
	watchers int
}

// NewFeedGroup returns an empty group. start, which may be nil, is called
// when a service gets its first Watcher, with the service's new feed; the
// stop func it returns (which may be nil) is called once, when the last
// Watcher of the service has stopped or when the group is closed. See
// Watch for the locks held when each runs.
func NewFeedGroup(start func(service string, f *Feed) (stop func())) *FeedGroup {
	return &FeedGroup{start: start}
}

// Watch returns a new Watcher of service on the feed that all of the
// service's watchers share; it lives until Stop or until ctx ends (see
// Feed.NewWatcher). If the service has no live feed yet, Watch
// creates one and calls start with it, synchronously: on the caller's
// goroutine, so that start sees what the caller's locks guard, and with the
// group's lock held, so start must not call the group's methods. Watchers'
// first Next waits for the feed's first Publish; a start hook that
// publishes the current set makes it return at once.
//
// onStop, if not nil, runs once when the Watcher is stopped, after the
// group has released the Watcher's share of the feed. When the last Watcher
// of a service stops, the group drops the feed, runs the stop func that
// start returned and closes the feed. Neither onStop nor stop runs with the
// group's lock held, so both may take the caller's locks.
//
// After Close, Watch returns a Watcher whose Next returns the error given
// to Close; start is not called, and Stop still runs onStop.
func (g *FeedGroup) Watch(ctx context.Context, service string, onStop func()) discovery.Watcher {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		f := NewFeed()
		f.Close(g.closed)
		return f.NewWatcher(ctx, onStop)
	}
	gf := g.feeds[service]
	if gf == nil {
		gf = &groupFeed{feed: NewFeed()}
		if g.start != nil {
			gf.stop = g.start(service, gf.feed)
		}
		if g.feeds == nil {
			g.feeds = make(map[string]*groupFeed)
		}
		g.feeds[service] = gf
	}
	gf.watchers++
	return gf.feed.NewWatcher(ctx, func() {
		g.release(service, gf)
		if onStop != nil {
			onStop()
		}
	})
}

// release gives back one Watcher's share of gf, the feed of service, and
// drops the feed with its last Watcher.
func (g *FeedGroup) release(service string, gf *groupFeed) {
	g.mu.Lock()
	gf.watchers--
	last := gf.watchers == 0 && g.feeds[service] == gf
	if last {
		delete(g.feeds, service)
	}
	g.mu.Unlock()
	if last {
		gf.end(nil)
	}
}

// end runs gf's stop func and closes its feed with err.
func (gf *groupFeed) end(err error) {
	if gf.stop != nil {
		gf.stop()
	}
	gf.feed.Close(err)
}

// Feed returns the live feed of service, on which the backend publishes
// the service's sets or reports an outage, and whether the service has one
// (it has while it has Watchers, until Close).
func (g *FeedGroup) Feed(service string) (*Feed, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gf, ok := g.feeds[service]
	if !ok {
		return nil, false
	}
	return gf.feed, true
}

// Each calls fn with every live feed, in service order, for example to
// report an outage to every watcher or to publish fresh sets once the
// registry is back. It takes a snapshot first and calls fn without the
// group's lock held, so fn may call the group's methods; a feed dropped in
// the meantime ignores Publish and Fail. A nil fn does nothing.
func (g *FeedGroup) Each(fn func(service string, f *Feed)) {
	if fn == nil {
		return
	}
	g.mu.Lock()
	services := slices.Sorted(maps.Keys(g.feeds))
	feeds := make([]*Feed, len(services))
	for i, service := range services {
		feeds[i] = g.feeds[service].feed
	}
	g.mu.Unlock()
	for i, service := range services {
		fn(service, feeds[i])
	}
}

// Close drops every feed: it runs each stop func that start returned and
// closes each feed with err, so that every Watcher's Next returns err,
// which should wrap [discovery.ErrClosed] (nil means ErrClosed). Later
// calls to Watch return closed Watchers (see Watch). Close does not wait for
// anything that start launched; the backend does that. Close is idempotent;
// the first error stays.
func (g *FeedGroup) Close(err error) {
	if err == nil {
		err = discovery.ErrClosed
	}
	g.mu.Lock()
	if g.closed != nil {
		g.mu.Unlock()
		return
	}
	g.closed = err
	feeds := g.feeds
	g.feeds = nil
	g.mu.Unlock()
	for _, service := range slices.Sorted(maps.Keys(feeds)) {
		feeds[service].end(err)
	}
}
