package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/clientopts"
	"github.com/roster-sd/roster/retry"
)

var (
	_ discovery.Resolver         = (*Resolver)(nil)
	_ discovery.RevisionResolver = (*Resolver)(nil)
)

// errClosed is what the watchers of a closed Resolver return.
var errClosed = fmt.Errorf("cache: resolver closed: %w", discovery.ErrClosed)

// Resolver is a discovery.Resolver that serves the instance sets of the
// services it is asked about from memory, kept up to date by one upstream
// watch per service. See the package documentation.
//
// A service is followed from its first Resolve or Watch until Close, so a
// Resolver suits the bounded set of services one application talks to.
// Its upstream Watch is set up with a context that ends only at Close; a
// failed one is set up again after the next delay of the retry policy.
//
// A Resolver is safe for concurrent use. Close it when done: Close stops
// its upstream watches and goroutines.
type Resolver struct {
	upstream discovery.Resolver
	opts     options
	log      hclog.Logger

	ctx       context.Context // ends when Close starts; bounds every goroutine
	cancel    context.CancelFunc
	wg        sync.WaitGroup // one goroutine per entry
	closeOnce sync.Once

	mu      sync.RWMutex
	entries map[string]*entry // by service
	closed  bool
}

// entry is the cached state of one service. Its goroutine (Resolver.run)
// is the only writer.
type entry struct {
	service   string
	feed      *backendkit.Feed // the published set, for watchers
	ready     chan struct{}    // closed once the first set or the first failure is known
	readyOnce sync.Once

	mu sync.RWMutex
	// set is the published set, normalized; it is replaced, never
	// modified, so readers may copy it after unlocking.
	set []discovery.Instance
	rev uint64 // the upstream's revision of set (discovery.RevisionResolver); 0 unknown
	// reached is the highest revision received in the upstream's current
	// history (a set of unknown revision leaves it).
	reached uint64
	has     bool // set has been published
	// live: the upstream watch is healthy and reports set, so set is
	// confirmed at every moment. When not live, confirmed is the last
	// moment it was.
	live      bool
	confirmed time.Time
	stale     bool  // the upstream is failing
	err       error // the upstream's last failure, while stale
}

// New returns a Resolver that caches what upstream resolves. It starts no
// goroutine until the first Resolve or Watch.
//
// If upstream is nil or an option has an invalid value (a negative
// duration, a retry policy that fails Validate), New returns an error
// wrapping ErrInvalidOption that names the argument or option and the
// reason.
func New(upstream discovery.Resolver, opts ...Option) (*Resolver, error) {
	if upstream == nil {
		return nil, fmt.Errorf("%w: upstream resolver is nil", ErrInvalidOption)
	}
	o, err := clientopts.Build(defaultOptions(), opts, options.validate)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{
		upstream: upstream,
		opts:     o,
		log:      o.Log,
		ctx:      ctx,
		cancel:   cancel,
		entries:  make(map[string]*entry),
	}, nil
}

// Resolve implements discovery.Resolver. The first call for a service
// starts the service's upstream watch and waits, within ctx, for its first
// set, or for its first failure, which it returns. Later calls answer from
// memory, with no call to the upstream, as deep copies the caller may keep
// and modify.
//
// While the upstream watch is failing, Resolve keeps returning the last
// known set if WithStaleOnError allows it, and otherwise an error that
// wraps the upstream's error. During an empty hold (WithEmptyHold) it
// returns the held, non-empty set. An invalid service name gives an error
// wrapping discovery.ErrInvalidInstance; after Close, Resolve returns an
// error wrapping discovery.ErrClosed.
func (r *Resolver) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	set, _, err := r.ResolveRevision(ctx, service)
	return set, err
}

// ResolveRevision implements discovery.RevisionResolver: Resolve, with
// the revision the upstream gave with the set (0 if the upstream does not
// tell revisions). The cache's watchers give the same with each set.
func (r *Resolver) ResolveRevision(ctx context.Context, service string) ([]discovery.Instance, uint64, error) {
	set, rev, err := r.currentRev(ctx, service, "resolve")
	if err != nil {
		return nil, 0, err
	}
	return discovery.CloneSet(set), rev, nil
}

// Routable returns the instances of service that should get new traffic,
// picked from the set Resolve would return by the Resolver's
// discovery.RoutePolicy (see WithRoutePolicy): the serving ones, or, when
// none is serving, the not-ready ones with fallback set; never draining
// ones. They are deep copies, sorted by ID. Resolve and Watch still return
// every instance, for tools that show them all. Errors are Resolve's.
func (r *Resolver) Routable(ctx context.Context, service string) (routed []discovery.Instance, fallback bool, err error) {
	set, err := r.current(ctx, service, "routable")
	if err != nil {
		return nil, false, err
	}
	routed, fallback = r.opts.route.Select(set)
	return discovery.CloneSet(routed), fallback, nil
}

// View calls fn with the set Resolve would return, without copying it: the
// cheapest read, for hot paths such as picking an instance for every
// request. fn must neither modify nor retain the slice or the instances'
// Metadata maps (the cache shares them with every caller); copy what it
// keeps. fn runs on the caller's goroutine and is not called when View
// returns an error, for the same reasons as Resolve.
func (r *Resolver) View(ctx context.Context, service string, fn func([]discovery.Instance)) error {
	set, err := r.current(ctx, service, "view")
	if err != nil {
		return err
	}
	fn(set)
	return nil
}

// current returns the cached set of service, shared: entries replace their
// set on every change and never modify one in place.
func (r *Resolver) current(ctx context.Context, service, op string) ([]discovery.Instance, error) {
	set, _, err := r.currentRev(ctx, service, op)
	return set, err
}

// currentRev is current with the set's revision.
func (r *Resolver) currentRev(ctx context.Context, service, op string) ([]discovery.Instance, uint64, error) {
	e, err := r.entry(service)
	if err != nil {
		return nil, 0, fmt.Errorf("cache: %s %q: %w", op, service, err)
	}
	select {
	case <-e.ready:
	default:
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("cache: %s %q: waiting for the first set: %w", op, service, ctx.Err())
		case <-r.ctx.Done():
			return nil, 0, fmt.Errorf("cache: %s %q: %w", op, service, discovery.ErrClosed)
		}
	}

	e.mu.RLock()
	set, rev, has, stale, cause, age := e.set, e.rev, e.has, e.stale, e.err, e.ageLocked()
	e.mu.RUnlock()
	switch {
	case !has:
		return nil, 0, fmt.Errorf("cache: %s %q: no set yet: %w", op, service, cause)
	case stale && !r.servesStale(age):
		return nil, 0, fmt.Errorf("cache: %s %q: upstream failing, cached set is %v old: %w",
			op, service, age.Round(time.Millisecond), cause)
	}
	return set, rev, nil
}

// servesStale reports whether a stale set of this age may be returned.
func (r *Resolver) servesStale(age time.Duration) bool {
	return r.opts.staleOnError && (r.opts.maxAge == 0 || age <= r.opts.maxAge)
}

// Watch implements discovery.Resolver. All watchers of a service share the
// service's cached state and its one upstream watch, which Watch starts if
// it is the first call for the service. A watcher's first Next returns the
// cached set, waiting for the first one if need be; it then sees every set
// the cache publishes, coalesced. While the upstream fails, watchers keep
// the last set (they are not told that every instance left) and see the
// changes again once the upstream is back. When the upstream reports that
// the registry is unreachable (an error wrapping discovery.ErrUnavailable),
// the cache's watchers are told the same way: their Next returns an error
// wrapping discovery.ErrUnavailable once, and, once the upstream is back,
// the current set even if it did not change. A watcher lives until Stop,
// until ctx ends or until Close. An
// invalid service name gives an error wrapping discovery.ErrInvalidInstance;
// after Close, Watch returns an error wrapping discovery.ErrClosed and the
// Next of every watcher returns one.
func (r *Resolver) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cache: watch %q: %w", service, err)
	}
	e, err := r.entry(service)
	if err != nil {
		return nil, fmt.Errorf("cache: watch %q: %w", service, err)
	}
	return e.feed.NewWatcher(ctx, nil), nil
}

// Snapshot returns what the cache holds for service, without starting a
// watch or waiting: a copy of the set that Resolve would return if the
// upstream were healthy; its age, the time since the upstream last
// confirmed it (zero while the upstream watch is healthy and reports this
// very set); and stale, whether the upstream is failing at the moment. ok
// is false if the service has no set yet, or after Close.
func (r *Resolver) Snapshot(service string) (set []discovery.Instance, age time.Duration, stale bool, ok bool) {
	r.mu.RLock()
	e, closed := r.entries[service], r.closed
	r.mu.RUnlock()
	if e == nil || closed {
		return nil, 0, false, false
	}
	e.mu.RLock()
	set, has, age, stale := e.set, e.has, e.ageLocked(), e.stale
	e.mu.RUnlock()
	if !has {
		return nil, 0, false, false
	}
	return discovery.CloneSet(set), age, stale, true
}

// Services returns the names of the services the Resolver follows, sorted:
// every service it has been asked to resolve or watch, since New and until
// Close (it returns none afterwards). Together with Snapshot, it lets
// metrics report the staleness of every cached set.
func (r *Resolver) Services() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil
	}
	out := make([]string, 0, len(r.entries))
	for service := range r.entries {
		out = append(out, service)
	}
	slices.Sort(out)
	return out
}

// Close stops every upstream watch and goroutine of the Resolver and waits
// for them; pending and later Next calls of its watchers, and later calls
// of Resolve and Watch, return errors wrapping discovery.ErrClosed. The
// upstream Resolver is not closed: it belongs to the caller. Close is
// idempotent and returns nil.
func (r *Resolver) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		entries := r.entries
		r.mu.Unlock()

		r.cancel()
		r.wg.Wait()
		for _, e := range entries {
			e.feed.Close(errClosed)
		}
	})
	return nil
}

// entry returns the entry of service, creating it and starting its
// goroutine on first use. It fails with discovery.ErrClosed after Close and
// with the validation error of an invalid service name.
func (r *Resolver) entry(service string) (*entry, error) {
	r.mu.RLock()
	e, closed := r.entries[service], r.closed
	r.mu.RUnlock()
	switch {
	case closed:
		return nil, discovery.ErrClosed
	case e != nil:
		return e, nil
	}
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, discovery.ErrClosed
	}
	if e := r.entries[service]; e != nil {
		return e, nil
	}
	e = &entry{service: service, feed: backendkit.NewFeed(), ready: make(chan struct{})}
	r.entries[service] = e
	r.wg.Go(func() { r.run(e) })
	r.log.Debug("following service", "service", service)
	return e, nil
}

// run keeps e up to date until Close. It never gives up on a failing
// upstream: it marks e stale, waits for the next delay of the retry policy
// and watches again.
func (r *Resolver) run(e *entry) {
	var hold time.Time // when the upstream reported the set empty, during an empty hold
	r.opts.Retry.Forever(r.ctx, func(context.Context) (bool, error) {
		return r.follow(e, &hold)
	}, func(f retry.Failure) {
		// A hold needs d of emptiness seen without interruption.
		hold = time.Time{}
		e.fail(f.Err)
		r.log.Warn("upstream watch failed, retrying", "service", e.service,
			"attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
	})
}

// follow watches the service upstream and records every set it reports,
// until the watch fails or the Resolver is closed. It reports whether the
// watch delivered at least one set. An error wrapping
// discovery.ErrUnavailable does not end the watch: it marks e stale, and
// the watch's next set makes it fresh again.
func (r *Resolver) follow(e *entry, hold *time.Time) (healthy bool, err error) {
	w, err := r.upstream.Watch(r.ctx, e.service)
	if err != nil {
		return false, fmt.Errorf("watch %q: %w", e.service, err)
	}
	defer w.Stop()
	restoring := e.isStale()
	for {
		ctx, cancel := r.ctx, context.CancelFunc(func() {})
		var deadline time.Time
		if !hold.IsZero() {
			deadline = hold.Add(r.opts.emptyHold)
			ctx, cancel = context.WithDeadline(r.ctx, deadline)
		}
		var (
			set []discovery.Instance
			rev uint64
		)
		if rw, ok := w.(discovery.RevisionWatcher); ok {
			set, rev, err = rw.NextRevision(ctx)
		} else {
			set, err = w.Next(ctx)
		}
		cancel()
		switch {
		case r.ctx.Err() != nil:
			return healthy, r.ctx.Err()
		case err == nil:
			healthy = true
			if restoring {
				restoring = false
				r.log.Info("upstream watch restored", "service", e.service)
			}
			r.receive(e, set, rev, hold)
		case !deadline.IsZero() && errors.Is(err, context.DeadlineExceeded) && !time.Now().Before(deadline):
			// The set stayed empty for the whole hold.
			r.receive(e, nil, 0, hold)
		case errors.Is(err, discovery.ErrUnavailable):
			// The registry is unreachable, but the watch goes on and
			// its next set ends the outage: keep it, no backoff.
			restoring = true
			// A hold needs d of emptiness seen without interruption.
			*hold = time.Time{}
			err = fmt.Errorf("watch %q: next: %w", e.service, err)
			e.fail(err)
			r.log.Warn("registry unavailable, serving the last set until the upstream watch recovers",
				"service", e.service, "error", err)
		default:
			return healthy, fmt.Errorf("watch %q: next: %w", e.service, err)
		}
	}
}

// receive records a set reported by a healthy upstream watch, at the
// upstream's revision rev (0 if unknown), and publishes it, unless it is
// an empty set that must be held first.
func (r *Resolver) receive(e *entry, set []discovery.Instance, rev uint64, hold *time.Time) {
	set = discovery.NormalizeSet(set)
	now := time.Now()
	e.mu.Lock()
	if len(set) == 0 && len(e.set) > 0 && r.opts.emptyHold > 0 {
		if hold.IsZero() {
			*hold = now
			r.log.Debug("upstream reports no instances, holding the last set",
				"service", e.service, "instances", len(e.set), "hold", r.opts.emptyHold)
		}
		if now.Sub(*hold) < r.opts.emptyHold {
			if e.live {
				e.live, e.confirmed = false, now
			}
			e.stale, e.err = false, nil
			held, heldRev := e.set, e.rev
			e.mu.Unlock()
			// The held set is still the published one. After an outage
			// (the feed is failing) publishing it again tells the
			// watchers the cache is fresh; otherwise it changes nothing.
			e.feed.PublishAt(held, heldRev)
			e.markReady()
			return
		}
		r.log.Info("service has no instances", "service", e.service, "after", now.Sub(*hold).Round(time.Millisecond))
	}
	*hold = time.Time{}
	// A revision below the highest one received comes from a new history
	// of the registry (wiped, restored, its store made again), after an
	// outage the upstream reported: the cache's watchers must be told of
	// it even if they did not look during the outage (see Feed.Reset).
	older := rev != 0 && rev < e.reached
	prev := e.reached
	if older || rev > e.reached {
		e.reached = rev
	}
	e.set, e.rev, e.has = set, rev, true
	e.live, e.stale, e.err = true, false, nil
	e.mu.Unlock()
	if older {
		e.feed.Reset(fmt.Errorf("cache: the upstream's revisions started again (%d after %d): %w", rev, prev, errNewHistory))
	}
	e.feed.PublishAt(set, rev)
	e.markReady()
}

// errNewHistory is the cause of the outage the cache's watchers report
// when the upstream's revisions start again.
var errNewHistory = errors.New("the registry started a new history")

// fail records that the upstream watch failed with err. If err wraps
// discovery.ErrUnavailable, the registry is unreachable: the watchers of
// the cache are told so, once, as the upstream's watchers are (see
// backendkit.Feed.Fail), and get the set again once the cache is fresh.
func (e *entry) fail(err error) {
	e.mu.Lock()
	if e.live {
		e.live, e.confirmed = false, time.Now()
	}
	e.stale, e.err = true, err
	e.mu.Unlock()
	if errors.Is(err, discovery.ErrUnavailable) {
		e.feed.Fail(fmt.Errorf("cache: %w", err))
	}
	e.markReady()
}

func (e *entry) isStale() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.stale
}

// ageLocked returns the time since the upstream last confirmed e.set.
func (e *entry) ageLocked() time.Duration {
	if e.live || !e.has {
		return 0
	}
	return time.Since(e.confirmed)
}

func (e *entry) markReady() {
	e.readyOnce.Do(func() { close(e.ready) })
}
