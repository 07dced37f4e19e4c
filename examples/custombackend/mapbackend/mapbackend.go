package mapbackend

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

var (
	_ discovery.Backend        = (*Backend)(nil)
	_ discovery.StatusReporter = (*Backend)(nil)
)

// Registry is the shared registry. The zero value is not usable; call
// NewRegistry. It is safe for concurrent use.
type Registry struct {
	mu sync.Mutex
	// claims holds, per service and ID, every handle that registered the
	// key, oldest first: the last one owns it and its instance is the
	// published one.
	claims map[string]map[string][]claim
	feeds  *backendkit.FeedGroup // a shared feed per watched service
	// changes wakes every FollowRegistry when any service changes.
	changes backendkit.Broadcast
}

type claim struct {
	b  *Backend
	in discovery.Instance
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{claims: make(map[string]map[string][]claim)}
	// A service's first watcher gets the current set: Watch holds r.mu
	// when the group calls this.
	r.feeds = backendkit.NewFeedGroup(func(service string, f *backendkit.Feed) func() {
		f.Publish(r.setLocked(service))
		return nil
	})
	return r
}

// Backend is one handle on a Registry. Close it when done.
type Backend struct {
	reg   *Registry
	board *backendkit.StatusBoard

	// Guarded by reg.mu.
	held     map[discovery.Key]bool
	watchers map[discovery.Watcher]struct{}
	closed   bool

	// done is closed by Close: it ends this handle's FollowRegistry calls.
	done chan struct{}
}

// NewBackend returns a new handle on r.
func (r *Registry) NewBackend() *Backend {
	return &Backend{
		reg:      r,
		board:    backendkit.NewStatusBoard(),
		held:     make(map[discovery.Key]bool),
		watchers: make(map[discovery.Watcher]struct{}),
		done:     make(chan struct{}),
	}
}

// Register implements discovery.Registrar. The write is done when it
// returns; a key another handle owned is taken over.
func (b *Backend) Register(ctx context.Context, in discovery.Instance) error {
	in, err := in.Normalize()
	if err != nil {
		return fmt.Errorf("mapbackend: register: %w", err)
	}
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := b.usableLocked(ctx); err != nil {
		return fmt.Errorf("mapbackend: register %s: %w", in.Key(), err)
	}
	if !b.held[in.Key()] {
		b.held[in.Key()] = true
		b.board.Set(discovery.Status{Instance: in, State: discovery.StateRegistering})
	}
	list := withoutClaim(r.claims[in.Service][in.ID], b)
	if len(list) > 0 {
		// The owner so far waits for this handle to let go.
		prev := list[len(list)-1]
		prev.b.board.Set(discovery.Status{Instance: prev.in, State: discovery.StateConflict,
			Err: fmt.Errorf("mapbackend: %s taken over by another handle: %w", in.Key(), discovery.ErrConflict)})
	}
	// The status first, so that whoever sees the new set through a
	// watcher also sees the registration as registered.
	b.board.Set(discovery.Status{Instance: in, State: discovery.StateRegistered})
	r.setClaimsLocked(in.Key(), append(list, claim{b: b, in: in}))
	return nil
}

// Deregister implements discovery.Registrar. If this handle owned the key
// and another one is waiting for it, that one takes it back.
func (b *Backend) Deregister(ctx context.Context, in discovery.Instance) error {
	if in.ID == "" {
		in.ID = discovery.IDFromAddress(in.Address)
	}
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := b.usableLocked(ctx); err != nil {
		return fmt.Errorf("mapbackend: deregister %s: %w", in.Key(), err)
	}
	if !b.held[in.Key()] {
		return fmt.Errorf("mapbackend: deregister %s: %w", in.Key(), discovery.ErrNotRegistered)
	}
	b.releaseLocked(in.Key())
	return nil
}

// releaseLocked drops b's claim on key and hands the key to the next
// claimant, if b owned it.
func (b *Backend) releaseLocked(key discovery.Key) {
	r := b.reg
	delete(b.held, key)
	list := r.claims[key.Service][key.ID]
	i := slices.IndexFunc(list, func(c claim) bool { return c.b == b })
	mine := list[i]
	list = slices.Delete(slices.Clone(list), i, i+1)
	if i == len(list) && len(list) > 0 { // b owned the key: the previous claimant takes it back
		next := list[len(list)-1]
		next.b.board.Set(discovery.Status{Instance: next.in, State: discovery.StateRegistered})
	}
	b.board.Set(discovery.Status{Instance: mine.in, State: discovery.StateDeregistered})
	r.setClaimsLocked(key, list)
}

// Resolve implements discovery.Resolver.
func (b *Backend) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("mapbackend: resolve: %w", err)
	}
	if err := b.usableLocked(ctx); err != nil {
		return nil, fmt.Errorf("mapbackend: resolve %q: %w", service, err)
	}
	return r.setLocked(service), nil
}

// Watch implements discovery.Resolver. The watchers of a service share one
// backendkit.Feed, which does the coalescing and the copying; the
// backendkit.FeedGroup creates it for the first and drops it after the last.
func (b *Backend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("mapbackend: watch: %w", err)
	}
	if err := b.usableLocked(ctx); err != nil {
		return nil, fmt.Errorf("mapbackend: watch %q: %w", service, err)
	}
	var w discovery.Watcher
	w = r.feeds.Watch(ctx, service, func() { // runs on Stop, without r.mu
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(b.watchers, w)
	})
	b.watchers[w] = struct{}{}
	return w, nil
}

// Close implements discovery.Registrar: it deregisters everything this
// handle holds and stops its watchers and status subscriptions.
func (b *Backend) Close() error {
	r := b.reg
	r.mu.Lock()
	if b.closed {
		r.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	keys := make([]discovery.Key, 0, len(b.held))
	for k := range b.held {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y discovery.Key) int {
		return cmp.Or(strings.Compare(x.Service, y.Service), strings.Compare(x.ID, y.ID))
	})
	for _, k := range keys {
		b.releaseLocked(k)
	}
	watchers := b.watchers
	b.watchers = nil
	r.mu.Unlock()

	for w := range watchers {
		w.Stop() // takes r.mu: called without it
	}
	b.board.Close()
	return nil
}

// Status implements discovery.StatusReporter.
func (b *Backend) Status(service, id string) (discovery.Status, error) {
	return b.board.Status(service, id)
}

// Statuses implements discovery.StatusReporter.
func (b *Backend) Statuses() []discovery.Status { return b.board.Statuses() }

// SubscribeStatus implements discovery.StatusReporter.
func (b *Backend) SubscribeStatus() discovery.StatusSubscription { return b.board.SubscribeStatus() }

func (b *Backend) usableLocked(ctx context.Context) error {
	if b.closed {
		return discovery.ErrClosed
	}
	return ctx.Err()
}

// setClaimsLocked stores the claims of key and tells the service's
// watchers and every FollowRegistry.
func (r *Registry) setClaimsLocked(key discovery.Key, list []claim) {
	ids := r.claims[key.Service]
	switch {
	case len(list) > 0 && ids == nil:
		ids = make(map[string][]claim)
		r.claims[key.Service] = ids
		fallthrough
	case len(list) > 0:
		ids[key.ID] = list
	default:
		delete(ids, key.ID)
		if len(ids) == 0 {
			delete(r.claims, key.Service)
		}
	}
	if f, ok := r.feeds.Feed(key.Service); ok {
		f.Publish(r.setLocked(key.Service))
	}
	r.changes.Notify()
}

// setLocked returns the published instances of service: each key's
// owner's, sorted, as copies.
func (r *Registry) setLocked(service string) []discovery.Instance {
	set := make([]discovery.Instance, 0, len(r.claims[service]))
	for _, list := range r.claims[service] {
		set = append(set, list[len(list)-1].in)
	}
	return discovery.NormalizeSet(set)
}

// withoutClaim returns list without b's claim, as a new slice.
func withoutClaim(list []claim, b *Backend) []claim {
	return slices.DeleteFunc(slices.Clone(list), func(c claim) bool { return c.b == b })
}
