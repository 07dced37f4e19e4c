package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/roster-sd/roster/discovery"
)

// This file is the memory backend's discovery.OperatorView: the Store as
// an operator's tool sees it. The Store has no leases: instances stay
// until they are removed, so none has a TTL.

var _ discovery.OperatorView = (*Backend)(nil)

// changedLocked wakes every FollowRegistry of the Store.
func (s *Store) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// operableLocked reports why b cannot serve an operator's call now.
func (b *Backend) operableLocked(ctx context.Context, op string) error {
	switch {
	case b.closed:
		return fmt.Errorf("memory: %s: %w", op, discovery.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("memory: %s: %w", op, ctx.Err())
	case !b.store.available:
		return fmt.Errorf("memory: %s: %w", op, ErrUnavailable)
	}
	return nil
}

// setsLocked returns every service's set, as Resolve reads it.
func (s *Store) setsLocked() map[string][]discovery.Instance {
	sets := make(map[string][]discovery.Instance, len(s.services))
	for service := range s.services {
		if set := s.setLocked(service); len(set) > 0 {
			sets[service] = set
		}
	}
	return sets
}

// Services implements discovery.OperatorView. The Store holds nothing but
// instances, so nothing is ever skipped.
func (b *Backend) Services(ctx context.Context) ([]discovery.ServiceSummary, []discovery.SkippedEntry, error) {
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.operableLocked(ctx, "list services"); err != nil {
		return nil, nil, err
	}
	sets := s.setsLocked()
	out := make([]discovery.ServiceSummary, 0, len(sets))
	for _, service := range slices.Sorted(maps.Keys(sets)) {
		out = append(out, discovery.ServiceSummary{Service: service, Instances: len(sets[service])})
	}
	return out, nil, nil
}

// Instances implements discovery.OperatorView: the instances of service as
// Resolve reads them, none with a lease.
func (b *Backend) Instances(ctx context.Context, service string) ([]discovery.InstanceInfo, []discovery.SkippedEntry, error) {
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.usableLocked(ctx, "list instances", service); err != nil {
		return nil, nil, err
	}
	set := s.setLocked(service)
	out := make([]discovery.InstanceInfo, 0, len(set))
	for _, in := range set {
		out = append(out, discovery.InstanceInfo{LeasedInstance: discovery.LeasedInstance{Instance: in}})
	}
	return out, nil, nil
}

// Delete implements discovery.OperatorView. It removes the instance as
// Store.Expire does: its owner reports discovery.StateLost and writes it
// back after its restore delay.
func (b *Backend) Delete(ctx context.Context, service, id string) error {
	if err := discovery.ValidateName("ID", id); err != nil {
		return fmt.Errorf("memory: delete: %w", err)
	}
	s := b.store
	s.mu.Lock()
	if err := b.usableLocked(ctx, "delete", service); err != nil {
		s.mu.Unlock()
		return err
	}
	_, ok := s.services[service][id]
	s.mu.Unlock()
	// Between the two locks another call may remove it: Expire says so.
	if !ok || !s.Expire(service, id) {
		return fmt.Errorf("memory: delete %s/%s: %w", service, id, discovery.ErrNotRegistered)
	}
	return nil
}

// FindServices implements discovery.OperatorView, on FollowRegistry.
func (b *Backend) FindServices(ctx context.Context, found func(services []string)) error {
	return b.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
		if u.Unreachable != nil {
			return
		}
		names := []string{} // a Reset of an empty Store: none, but read
		for _, set := range u.Services {
			if len(set.Instances) > 0 {
				names = append(names, set.Service)
			}
		}
		if u.Reset || len(names) > 0 {
			found(names)
		}
	})
}

// FollowRegistry implements discovery.OperatorView. It is woken by every
// change of the Store and reports the services whose set changed; during
// an outage (Store.SetAvailable) it reports the Store unreachable, and
// then the changes made meanwhile.
func (b *Backend) FollowRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	s := b.store
	var last map[string][]discovery.Instance // nil until the first read
	down := false
	for {
		s.mu.Lock()
		if b.closed {
			s.mu.Unlock()
			return fmt.Errorf("memory: follow the registry: %w", discovery.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return err
		}
		available, changed := s.available, s.changed
		var sets map[string][]discovery.Instance
		if available {
			sets = s.setsLocked()
		}
		s.mu.Unlock()

		switch {
		case !available && last == nil:
			return fmt.Errorf("memory: follow the registry: %w", ErrUnavailable)
		case !available:
			if !down {
				down = true
				apply(discovery.RegistryUpdate{Unreachable: fmt.Errorf("memory: follow the registry: %w", ErrUnavailable)})
			}
		default:
			u := discovery.RegistryUpdate{Reset: last == nil}
			for _, service := range slices.Sorted(maps.Keys(sets)) {
				if u.Reset || !slices.EqualFunc(last[service], sets[service], discovery.Instance.Equal) {
					u.Services = append(u.Services, serviceSet(service, sets[service]))
				}
			}
			for service := range last {
				if _, ok := sets[service]; !ok {
					u.Services = append(u.Services, discovery.ServiceSet{Service: service})
				}
			}
			if u.Reset || down || len(u.Services) > 0 {
				apply(u)
			}
			last, down = sets, false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.ctx.Done():
			return fmt.Errorf("memory: follow the registry: %w", discovery.ErrClosed)
		case <-changed:
		}
	}
}

// serviceSet is the ServiceSet of service, none of its instances leased.
func serviceSet(service string, set []discovery.Instance) discovery.ServiceSet {
	out := discovery.ServiceSet{Service: service, Instances: make([]discovery.LeasedInstance, 0, len(set))}
	for _, in := range set {
		out.Instances = append(out.Instances, discovery.LeasedInstance{Instance: in})
	}
	return out
}

// ReadLease implements discovery.OperatorView. The Store has no leases:
// every name reads as not found.
func (b *Backend) ReadLease(ctx context.Context, lease string) (discovery.LeaseInfo, error) {
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.operableLocked(ctx, "read lease"); err != nil {
		return discovery.LeaseInfo{}, err
	}
	return discovery.LeaseInfo{}, nil
}

// Where implements discovery.OperatorView.
func (b *Backend) Where() string { return "in memory" }

// EntryOf implements discovery.OperatorView.
func (b *Backend) EntryOf(k discovery.Key) string { return "instance " + k.String() + " in memory" }
