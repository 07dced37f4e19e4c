package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/retry"
)

var (
	_ discovery.Backend          = (*Backend)(nil)
	_ discovery.StatusReporter   = (*Backend)(nil)
	_ discovery.FactsReporter    = (*Backend)(nil)
	_ discovery.RevisionResolver = (*Backend)(nil)
)

// Backend is one handle on a Store, as one process's etcd client is a
// handle on a shared etcd cluster. It registers instances in the Store,
// resolves and watches them, and reports the status of its registrations.
//
// A Backend is safe for concurrent use. Close it when done: Close removes
// its instances from the Store and stops its watchers and goroutines.
type Backend struct {
	store     *Store
	opts      options
	board     *backendkit.StatusBoard
	ctx       context.Context // ends when Close starts; bounds goroutines
	cancel    context.CancelFunc
	wg        sync.WaitGroup // goroutines: delayed restores, the outage retry loop
	wake      chan struct{}  // receives a value when the Store becomes available
	closeOnce sync.Once

	// Guarded by store.mu.
	regs     map[discovery.Key]*registration
	leaving  map[discovery.Key]struct{} // deregistered during an outage: removed from the Store when it is back
	watchers map[discovery.Watcher]struct{}
	closed   bool
	retrying bool   // the outage retry loop is running
	retries  uint64 // failed attempts during outages, for BackendFacts
}

// registration is one instance this Backend holds, whether or not it owns
// the key in the Store at the moment. Guarded by store.mu.
type registration struct {
	inst    discovery.Instance
	state   discovery.State
	waitSeq uint64 // in StateConflict: when it started waiting, to hand keys over in order
	lostGen uint64 // counts entries into StateLost, so a stale delayed restore does nothing
}

// New returns a Backend on store; a nil store gives the Backend a private
// Store of its own (see Backend.Store).
//
// If an option has an invalid value (a negative restore delay, a retry
// policy that fails Validate), New returns an error wrapping
// ErrInvalidOption that names the option and the reason, and starts
// nothing.
func New(store *Store, opts ...Option) (*Backend, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil { // a nil Option changes nothing
			opt(&o)
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if store == nil {
		store = NewStore()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		store:    store,
		opts:     o,
		board:    backendkit.NewStatusBoard(),
		ctx:      ctx,
		cancel:   cancel,
		wake:     make(chan struct{}, 1),
		regs:     make(map[discovery.Key]*registration),
		leaving:  make(map[discovery.Key]struct{}),
		watchers: make(map[discovery.Watcher]struct{}),
	}
	store.mu.Lock()
	store.backends[b] = struct{}{}
	store.mu.Unlock()
	return b, nil
}

// Store returns the Store this Backend is a handle on.
func (b *Backend) Store() *Store { return b.store }

// Register implements discovery.Registrar. It validates in (an error wraps
// discovery.ErrInvalidInstance and names the field), writes it to the Store
// and returns; the registration is then discovery.StateRegistered.
// Registering the same service and ID again updates the instance in place.
// If another Backend owned the key, this one takes it over and the other
// reports discovery.StateConflict. It fails with ErrUnavailable during an
// outage, ctx's error if ctx has ended, and discovery.ErrClosed after
// Close; in each of these cases it writes nothing.
func (b *Backend) Register(ctx context.Context, in discovery.Instance) error {
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.closed {
		return fmt.Errorf("memory: register: %w", discovery.ErrClosed)
	}
	in, err := in.Normalize()
	if err != nil {
		return fmt.Errorf("memory: register: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: register %s: %w", in.Key(), err)
	}
	if !s.available {
		return fmt.Errorf("memory: register %s: %w", in.Key(), ErrUnavailable)
	}
	r := b.regs[in.Key()]
	if r == nil {
		r = &registration{inst: in}
		b.regs[in.Key()] = r
		b.setLocked(r, discovery.Status{State: discovery.StateRegistering})
	}
	r.inst = in
	s.putLocked(b, in)
	b.setLocked(r, discovery.Status{State: discovery.StateRegistered})
	return nil
}

// Deregister implements discovery.Registrar. It removes the instance with
// in's Service and ID (or the ID derived from in.Address when in.ID is
// empty) from the Store at once and forgets it. If another Backend owns the
// key at the moment (this one is in discovery.StateConflict), the other's
// instance stays. An instance this Backend does not hold gives an error
// wrapping discovery.ErrNotRegistered, whoever owns the key, and
// discovery.ErrClosed after Close.
//
// During an outage (Store.SetAvailable) it keeps the discovery.Registrar
// contract as a networked backend does: it forgets the registration at once
// (reported deregistered), leaves the instance in the Store, and waits for
// the Store, within ctx. It returns nil once the Store is available again
// and the instance removed; if ctx ends first, it returns an error wrapping
// ErrUnavailable and ctx's error, and the instance is still removed when
// the Store is back (or by Close). A ctx that has already ended changes
// nothing to this.
func (b *Backend) Deregister(ctx context.Context, in discovery.Instance) error {
	s := b.store
	s.mu.Lock()
	if b.closed {
		s.mu.Unlock()
		return fmt.Errorf("memory: deregister: %w", discovery.ErrClosed)
	}
	key := in.Key()
	if key.ID == "" && in.Address != "" {
		key.ID = discovery.IDFromAddress(in.Address)
	}
	r := b.regs[key]
	if r == nil {
		s.mu.Unlock()
		return fmt.Errorf("memory: deregister %s: %w", key, discovery.ErrNotRegistered)
	}
	if s.available {
		b.dropLocked(r)
		s.mu.Unlock()
		return nil
	}
	delete(b.regs, key)
	b.setLocked(r, discovery.Status{State: discovery.StateDeregistered})
	if e, ok := s.entryLocked(key); !ok || e.owner != b {
		s.mu.Unlock()
		return nil // the instance in the Store (if any) is another Backend's
	}
	b.leaving[key] = struct{}{}
	back := s.back
	s.mu.Unlock()
	select {
	case <-back: // removed before back was closed
		return nil
	case <-b.ctx.Done(): // Close removed it
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memory: deregister %s: the removal waits for the Store: %w: %w", key, ErrUnavailable, ctx.Err())
	}
}

// removeLeavingLocked removes from the Store the instances that Deregister
// left there during an outage, unless another Backend has taken them over
// since.
func (b *Backend) removeLeavingLocked() {
	s := b.store
	for _, key := range sortedKeys(b.leaving) {
		if e, ok := s.entryLocked(key); ok && e.owner == b && b.regs[key] == nil {
			s.removeLocked(key)
		}
	}
	clear(b.leaving)
}

// Resolve implements discovery.Resolver: the instances of service in the
// Store, sorted by ID, as copies the caller may modify. It fails with
// ErrUnavailable during an outage, ctx's error if ctx has ended, and
// discovery.ErrClosed after Close.
func (b *Backend) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	set, _, err := b.ResolveRevision(ctx, service)
	return set, err
}

// ResolveRevision implements discovery.RevisionResolver. The Store counts
// its changes; a set's revision is that count when it was read, and the
// Backend's Watchers give the same with each set.
func (b *Backend) ResolveRevision(ctx context.Context, service string) ([]discovery.Instance, uint64, error) {
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.usableLocked(ctx, "resolve", service); err != nil {
		return nil, 0, err
	}
	return s.setLocked(service), s.rev, nil
}

// Watch implements discovery.Resolver. All watchers of a service, from any
// Backend on the Store, share one backendkit.Feed, so their first Next
// returns the current set at once and later changes are coalesced. The
// watcher lives until Stop, until ctx ends (which stops it as Stop does) or
// until this Backend is closed. Watch fails
// with ErrUnavailable during an outage, ctx's error if ctx has ended, and
// discovery.ErrClosed after Close.
func (b *Backend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.usableLocked(ctx, "watch", service); err != nil {
		return nil, err
	}
	return s.watchLocked(ctx, b, service), nil
}

// Status implements discovery.StatusReporter.
func (b *Backend) Status(service, id string) (discovery.Status, error) {
	return b.board.Status(service, id)
}

// Statuses implements discovery.StatusReporter.
func (b *Backend) Statuses() []discovery.Status {
	return b.board.Statuses()
}

// BackendFacts implements discovery.FactsReporter: Connected is whether
// the Store is available (see Store.SetAvailable), and RetryAttempts
// counts the failed attempts of the Backend's outage retry loop, one per
// attempt whatever the number of registrations. The memory backend has no
// lease.
func (b *Backend) BackendFacts() discovery.BackendFacts {
	b.store.mu.Lock()
	defer b.store.mu.Unlock()
	return discovery.BackendFacts{Connected: b.store.available, RetryAttempts: b.retries}
}

// SubscribeStatus implements discovery.StatusReporter. After Close the
// subscription yields nothing and its Next returns discovery.ErrClosed.
func (b *Backend) SubscribeStatus() discovery.StatusSubscription {
	return b.board.SubscribeStatus()
}

// Close implements discovery.Registrar. It removes every instance this
// Backend owns from the Store (reporting discovery.StateDeregistered for
// each of its registrations), hands keys over to Backends waiting for them,
// stops its goroutines and its watchers (their Next returns
// discovery.ErrClosed) and ends its status subscriptions. Close removes the
// instances even during an outage, standing in for the lease expiry that
// would remove them from a real registry, so it never fails. With
// WithDrainOnClose it first publishes them draining and waits, at most
// the option's duration. It is
// idempotent and returns nil; afterwards every other method returns
// discovery.ErrClosed.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		// WithDrainOnClose; a drain the store cannot take (an outage) is
		// given up at its bound, and the instances removed all the same.
		_ = backendkit.DrainOnClose(b, b, b.opts.drainOnClose)
		b.close()
	})
	return nil
}

func (b *Backend) close() {
	s := b.store
	s.mu.Lock()
	b.closed = true
	delete(s.backends, b)
	for _, key := range sortedKeys(b.regs) {
		b.dropLocked(b.regs[key])
	}
	b.removeLeavingLocked()
	watchers := b.watchers
	b.watchers = nil
	s.mu.Unlock()

	b.cancel()
	b.wg.Wait()
	for w := range watchers {
		w.Stop()
	}
	b.board.Close()
}

// usableLocked reports why b cannot serve a call now, if it cannot.
func (b *Backend) usableLocked(ctx context.Context, op, service string) error {
	if err := discovery.ValidateName("Service", service); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	switch {
	case b.closed:
		return fmt.Errorf("memory: %s %q: %w", op, service, discovery.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("memory: %s %q: %w", op, service, ctx.Err())
	case !b.store.available:
		return fmt.Errorf("memory: %s %q: %w", op, service, ErrUnavailable)
	}
	return nil
}

// dropLocked forgets r and removes its instance from the Store if this
// Backend owns it.
func (b *Backend) dropLocked(r *registration) {
	s := b.store
	key := r.inst.Key()
	delete(b.regs, key)
	if e, ok := s.entryLocked(key); ok && e.owner == b {
		s.removeLocked(key)
	}
	b.setLocked(r, discovery.Status{State: discovery.StateDeregistered})
}

// setLocked moves r to st.State and reports st for r's instance.
func (b *Backend) setLocked(r *registration, st discovery.Status) {
	r.state = st.State
	st.Instance = r.inst
	b.board.Set(st)
}

// conflictLocked records that another Backend has written r's key.
func (b *Backend) conflictLocked(r *registration) {
	if r.state != discovery.StateConflict {
		b.store.seq++
		r.waitSeq = b.store.seq
	}
	b.setLocked(r, discovery.Status{
		State: discovery.StateConflict,
		Err:   fmt.Errorf("memory: %s written by another backend: %w", r.inst.Key(), discovery.ErrConflict),
	})
}

// claimLocked publishes r unless another Backend owns its key, in which
// case r waits in StateConflict. The Store must be available.
func (b *Backend) claimLocked(r *registration) {
	s := b.store
	e, ok := s.entryLocked(r.inst.Key())
	switch {
	case !ok:
		s.putLocked(b, r.inst)
	case e.owner != b:
		b.conflictLocked(r)
		return
	case !e.inst.Equal(r.inst):
		s.putLocked(b, r.inst)
	}
	b.setLocked(r, discovery.Status{State: discovery.StateRegistered})
}

// lostLocked records that Store.Expire dropped r's instance and schedules
// its restore.
func (b *Backend) lostLocked(r *registration) {
	r.lostGen++
	b.setLocked(r, discovery.Status{
		State: discovery.StateLost,
		Err:   fmt.Errorf("memory: %s dropped from the store: %w", r.inst.Key(), ErrExpired),
	})
	d, gen := b.opts.restoreDelay, r.lostGen
	if d == 0 {
		b.restoreLocked(r, gen)
		return
	}
	b.wg.Go(func() {
		if err := retry.Sleep(b.ctx, d, nil); err != nil {
			return
		}
		b.store.mu.Lock()
		defer b.store.mu.Unlock()
		b.restoreLocked(r, gen)
	})
}

// restoreLocked puts back r after Store.Expire, unless it has been
// deregistered, registered again, lost again or taken care of by the outage
// retry loop in the meantime. During an outage the retry loop restores it.
func (b *Backend) restoreLocked(r *registration, gen uint64) {
	if b.closed || b.regs[r.inst.Key()] != r || r.state != discovery.StateLost || r.lostGen != gen ||
		!b.store.available {
		return
	}
	b.claimLocked(r)
}

// startRetryingLocked starts the outage retry loop if this Backend holds
// registrations and the loop is not running: attempt 1 has failed.
func (b *Backend) startRetryingLocked() {
	if b.closed || b.retrying || len(b.regs) == 0 {
		return
	}
	b.retrying = true
	select {
	case <-b.wake: // a stale wake-up from an earlier outage
	default:
	}
	bo := b.opts.retry.Backoff()
	delay, _ := bo.Next() // never stops: see retry.Backoff
	b.retryingLocked(1, delay)
	b.wg.Go(func() { b.retryLoop(bo, delay) })
}

// retryLoop retries, after each delay of the policy or as soon as the Store
// becomes available, until the Store is available or b is closed. It never
// gives up on its own.
func (b *Backend) retryLoop(bo retry.Backoff, delay time.Duration) {
	s := b.store
	for attempt := 2; ; attempt++ {
		err := retry.Sleep(b.ctx, delay, b.wake)
		s.mu.Lock()
		if err != nil || b.closed {
			b.retrying = false
			s.mu.Unlock()
			return
		}
		if s.available {
			b.retrying = false
			for _, key := range sortedKeys(b.regs) {
				b.claimLocked(b.regs[key])
			}
			s.mu.Unlock()
			return
		}
		delay, _ = bo.Next()
		b.retryingLocked(attempt, delay)
		s.mu.Unlock()
	}
}

// retryingLocked reports every registration as retrying.
func (b *Backend) retryingLocked(attempt int, delay time.Duration) {
	b.retries++
	cause := fmt.Errorf("memory: keep registrations published: %w", ErrUnavailable)
	for _, key := range sortedKeys(b.regs) {
		b.setLocked(b.regs[key], discovery.Status{
			State:   discovery.StateRetrying,
			Attempt: attempt,
			RetryIn: delay,
			Err:     cause,
		})
	}
}
