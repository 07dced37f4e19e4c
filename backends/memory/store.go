package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// Sentinel errors of the simulated faults. They are matched with errors.Is.
var (
	// ErrUnavailable reports a call made while the Store is unavailable
	// (see Store.SetAvailable). It wraps discovery.ErrUnavailable, so
	// errors.Is matches both. It is also the cause (Status.Err) of
	// discovery.StateRetrying during an outage, and what the error of
	// every watcher's Next wraps during an outage.
	ErrUnavailable = fmt.Errorf("memory: %w", discovery.ErrUnavailable)

	// ErrExpired is the cause (Status.Err) of discovery.StateLost after
	// Store.Expire dropped a registration. It wraps discovery.ErrRemoved,
	// so errors.Is matches both.
	ErrExpired = backendkit.Mark(errors.New("memory: registration expired"), discovery.ErrRemoved)
)

// Store is an in-memory registry shared by any number of Backends, as one
// etcd cluster is shared by many processes. It holds at most one instance
// per service and ID, owned by the Backend that wrote it last.
//
// Besides being the registry, a Store simulates registry faults for tests:
// see Expire and SetAvailable. All methods are safe for concurrent use. The
// zero value is not usable; call NewStore.
type Store struct {
	// mu guards the Store and the registration state of every Backend on
	// it (Backend fields marked "guarded by store.mu"), so that a write by
	// one Backend and its effect on another (a conflict, a hand-over)
	// happen atomically. StatusBoard, FeedGroup and Feed have their own
	// locks and are only ever called with mu held or with no lock at all,
	// never the other way round (feeds runs its stop hooks without its
	// lock).
	mu        sync.Mutex
	services  map[string]map[string]entry // service -> ID -> entry
	feeds     *backendkit.FeedGroup       // one feed per watched service, shared by the watchers of every Backend
	backends  map[*Backend]struct{}       // open Backends
	available bool
	back      chan struct{} // closed (and replaced) when the Store becomes available again
	seq       uint64        // orders the Backends waiting for a key
	rev       uint64        // counts the changes to services: the sets' revision (discovery.RevisionResolver)
	changed   chan struct{} // closed and replaced at every change, and when availability changes (operator.go)

	maint maintStore // operators' overrides (maint.go)
}

// entry is one published instance and the Backend that owns it.
type entry struct {
	inst  discovery.Instance
	owner *Backend
}

// NewStore returns an empty, available Store.
func NewStore() *Store {
	s := &Store{
		services:  make(map[string]map[string]entry),
		backends:  make(map[*Backend]struct{}),
		available: true,
		back:      make(chan struct{}),
		rev:       1, // 0 would mean unknown
		changed:   make(chan struct{}),
	}
	// A service's first watcher gets the current set at once. The group
	// calls this from watchLocked, so s.mu is held.
	s.feeds = backendkit.NewFeedGroup(func(service string, f *backendkit.Feed) func() {
		f.PublishAt(s.setLocked(service), s.rev)
		return nil
	})
	return s
}

// Expire drops the registration of service/id from the Store, as a registry
// does when a lease expires, and reports whether there was one. Watchers
// see the instance leave; the owning Backend reports discovery.StateLost
// with a cause wrapping ErrExpired and, after its restore delay (see
// WithRestoreDelay), writes the instance again and reports
// discovery.StateRegistered. With a zero delay the instance is back before
// Expire returns.
//
// If another Backend is waiting for the key (it reports
// discovery.StateConflict), it takes the key at once; the expired owner then
// finds the key taken when it restores, and waits in StateConflict. During
// an outage the restore waits for the Store to become available again.
func (s *Store) Expire(service, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := discovery.Key{Service: service, ID: id}
	e, ok := s.services[service][id]
	if !ok {
		return false
	}
	s.removeLocked(key)
	// The owner of an entry holds its registration, except an entry that
	// Deregister left in the Store during an outage (Backend.leaving),
	// which nobody restores.
	if r := e.owner.regs[key]; r != nil {
		e.owner.lostLocked(r)
	}
	return true
}

// SetAvailable starts (false) or ends (true) a simulated outage of the
// registry. While the Store is unavailable, Register, Resolve and Watch
// on any of its Backends fail with an error wrapping ErrUnavailable
// (Deregister waits: see below), and every Backend holding registrations reports
// discovery.StateRetrying for each of them: Attempt 1 before SetAvailable
// returns, then one more attempt after every delay of its retry policy.
// Registrations stay in the Store.
//
// Existing watchers stay open and see the outage as a real backend's
// watchers see a lost connection: the Next of every watcher, on every
// Backend, returns an error wrapping both discovery.ErrUnavailable and
// ErrUnavailable, once, and then waits; changes made to the Store during
// the outage (by Expire or Close) are not delivered.
//
// A Deregister during the outage forgets the registration at once but
// leaves the instance in the Store, and waits, within its context, for
// the Store to become available: the instance is removed then (see
// Backend.Deregister).
//
// When the Store becomes available again every watcher's Next returns the
// current set, even if it equals the last one it returned, so that the
// watcher knows its view is fresh again. Every retrying Backend tries at
// once (it does not sleep out its backoff), re-publishes what it holds and
// reports discovery.StateRegistered, or discovery.StateConflict for a key
// that another Backend owns; watchers see the changes this makes, if any,
// as usual. Setting the current availability again does nothing.
func (s *Store) SetAvailable(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.available == ok {
		return
	}
	s.available = ok
	if ok {
		// The removals that Deregister left waiting for the Store, before
		// anything is published; then the waiting Deregisters return.
		for b := range s.backends {
			b.removeLeavingLocked()
		}
		close(s.back)
		s.back = make(chan struct{})
	}
	s.changedLocked()
	s.feeds.Each(func(service string, f *backendkit.Feed) {
		if ok {
			// After Fail, Publish is delivered even if the set is unchanged.
			f.PublishAt(s.setLocked(service), s.rev)
			return
		}
		f.Fail(fmt.Errorf("memory: watch %q: %w", service, ErrUnavailable))
	})
	for b := range s.backends {
		if ok {
			select {
			case b.wake <- struct{}{}:
			default:
			}
			continue
		}
		b.startRetryingLocked()
	}
}

// entryLocked returns the entry of key.
func (s *Store) entryLocked(key discovery.Key) (entry, bool) {
	e, ok := s.services[key.Service][key.ID]
	return e, ok
}

// putLocked publishes in as owned by b. A different Backend that held the
// key before is told it lost it to a later writer.
func (s *Store) putLocked(b *Backend, in discovery.Instance) {
	key := in.Key()
	ids := s.services[key.Service]
	if ids == nil {
		ids = make(map[string]entry)
		s.services[key.Service] = ids
	}
	if prev, ok := ids[key.ID]; ok && prev.owner != b {
		if r := prev.owner.regs[key]; r != nil {
			prev.owner.conflictLocked(r)
		}
	}
	ids[key.ID] = entry{inst: in, owner: b}
	s.rev++
	s.publishLocked(key.Service)
}

// removeLocked drops key from the Store. If the Store is available and a
// Backend is waiting for the key, the one that has waited longest takes it.
// Watchers are told once, after the hand-over.
func (s *Store) removeLocked(key discovery.Key) {
	ids := s.services[key.Service]
	delete(ids, key.ID)
	s.rev++
	if len(ids) == 0 {
		delete(s.services, key.Service)
	}
	if s.available {
		var next *Backend
		var nextReg *registration
		for b := range s.backends {
			r := b.regs[key]
			if r != nil && r.state == discovery.StateConflict && (nextReg == nil || r.waitSeq < nextReg.waitSeq) {
				next, nextReg = b, r
			}
		}
		if next != nil {
			// putLocked publishes.
			next.claimLocked(nextReg)
			return
		}
	}
	s.publishLocked(key.Service)
}

// setLocked returns the current instances of service: sorted deep copies.
func (s *Store) setLocked(service string) []discovery.Instance {
	ids := s.services[service]
	set := make([]discovery.Instance, 0, len(ids))
	for _, e := range ids {
		set = append(set, e.inst)
	}
	return s.maint.applyLocked(service, discovery.NormalizeSet(set))
}

// publishLocked hands the current set of service to its watchers, if any.
// During an outage it does nothing: the watchers are cut off, and
// SetAvailable(true) hands them the set.
func (s *Store) publishLocked(service string) {
	if !s.available {
		return
	}
	s.changedLocked()
	if f, ok := s.feeds.Feed(service); ok {
		f.PublishAt(s.setLocked(service), s.rev)
	}
}

// watchLocked returns a new watcher of service for b, on the feed shared by
// all watchers of the service (see NewStore for its first set). The feed
// goes when its last watcher stops.
func (s *Store) watchLocked(ctx context.Context, b *Backend, service string) discovery.Watcher {
	var w discovery.Watcher
	w = s.feeds.Watch(ctx, service, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(b.watchers, w)
	})
	b.watchers[w] = struct{}{}
	return w
}

// sortedKeys returns the keys of regs in Service, ID order, so that status
// changes that happen together are reported in a stable order.
func sortedKeys[V any](regs map[discovery.Key]V) []discovery.Key {
	keys := make([]discovery.Key, 0, len(regs))
	for k := range regs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b discovery.Key) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.ID, b.ID))
	})
	return keys
}
