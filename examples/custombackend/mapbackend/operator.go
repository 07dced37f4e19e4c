package mapbackend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// This file is the backend's discovery.OperatorView: the registry as an
// operator's tool (roster ls, deregister, ui) sees it. The map has no
// leases, so no instance names one and every lease reads as not found;
// it holds nothing but instances, so nothing is ever skipped; and it
// always answers, so FollowRegistry never reports it unreachable.

var _ discovery.OperatorView = (*Backend)(nil)

// errDeleted is the cause of the discovery.StateLost that Delete gives the
// owner of the instance it removed.
var errDeleted = backendkit.Mark(errors.New("mapbackend: deleted by an operator"), discovery.ErrRemoved)

// Services implements discovery.OperatorView.
func (b *Backend) Services(ctx context.Context) ([]discovery.ServiceSummary, []discovery.SkippedEntry, error) {
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := b.usableLocked(ctx); err != nil {
		return nil, nil, fmt.Errorf("mapbackend: list services: %w", err)
	}
	out := make([]discovery.ServiceSummary, 0, len(r.claims))
	for _, service := range slices.Sorted(maps.Keys(r.claims)) {
		out = append(out, discovery.ServiceSummary{Service: service, Instances: len(r.claims[service])})
	}
	return out, nil, nil
}

// Instances implements discovery.OperatorView: the instances of service as
// Resolve reads them, none with a lease.
func (b *Backend) Instances(ctx context.Context, service string) ([]discovery.InstanceInfo, []discovery.SkippedEntry, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, nil, fmt.Errorf("mapbackend: list instances: %w", err)
	}
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := b.usableLocked(ctx); err != nil {
		return nil, nil, fmt.Errorf("mapbackend: list instances of %q: %w", service, err)
	}
	set := r.setLocked(service)
	out := make([]discovery.InstanceInfo, 0, len(set))
	for _, in := range set {
		out = append(out, discovery.InstanceInfo{LeasedInstance: discovery.LeasedInstance{Instance: in}})
	}
	return out, nil, nil
}

// Delete implements discovery.OperatorView. Every instance in the map
// belongs to an open handle (Close deregisters the rest), and a live
// registrar writes its instance back: so the instance leaves the registry,
// its owner reports discovery.StateLost, and the owner writes it back at
// once. Watchers may see it go and come back.
func (b *Backend) Delete(ctx context.Context, service, id string) error {
	if err := discovery.ValidateName("Service", service); err != nil {
		return fmt.Errorf("mapbackend: delete: %w", err)
	}
	if err := discovery.ValidateName("ID", id); err != nil {
		return fmt.Errorf("mapbackend: delete: %w", err)
	}
	key := discovery.Key{Service: service, ID: id}
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := b.usableLocked(ctx); err != nil {
		return fmt.Errorf("mapbackend: delete %s: %w", key, err)
	}
	list := r.claims[service][id]
	if len(list) == 0 {
		return fmt.Errorf("mapbackend: delete %s: %w", key, discovery.ErrNotRegistered)
	}
	owner := list[len(list)-1]
	owner.b.board.Set(discovery.Status{Instance: owner.in, State: discovery.StateLost, Err: errDeleted})
	r.setClaimsLocked(key, nil)
	// The owner restores its instance, as Register does: the status first.
	owner.b.board.Set(discovery.Status{Instance: owner.in, State: discovery.StateRegistered})
	r.setClaimsLocked(key, list)
	return nil
}

// FindServices implements discovery.OperatorView, on FollowRegistry: it
// reports the services of the first read, then those of every update.
func (b *Backend) FindServices(ctx context.Context, found func(services []string)) error {
	return b.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
		names := []string{} // not nil: an empty registry was read
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

// FollowRegistry implements discovery.OperatorView. It reads every set,
// then waits for the registry to change and reports the sets that differ
// from the last ones it reported.
func (b *Backend) FollowRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	r := b.reg
	var last map[string][]discovery.Instance // nil until the first read
	for {
		// Take the channel before reading: a change made after the read
		// has closed it already, so none is missed.
		changed := r.changes.Changed()
		r.mu.Lock()
		if err := b.usableLocked(ctx); err != nil {
			r.mu.Unlock()
			return fmt.Errorf("mapbackend: follow the registry: %w", err)
		}
		sets := make(map[string][]discovery.Instance, len(r.claims))
		for service := range r.claims {
			sets[service] = r.setLocked(service)
		}
		r.mu.Unlock()

		u := discovery.RegistryUpdate{Reset: last == nil}
		for _, service := range slices.Sorted(maps.Keys(sets)) {
			if u.Reset || !slices.EqualFunc(last[service], sets[service], discovery.Instance.Equal) {
				u.Services = append(u.Services, serviceSet(service, sets[service]))
			}
		}
		for _, service := range slices.Sorted(maps.Keys(last)) {
			if _, ok := sets[service]; !ok {
				u.Services = append(u.Services, discovery.ServiceSet{Service: service}) // none left
			}
		}
		if u.Reset || len(u.Services) > 0 {
			apply(u)
		}
		last = sets

		select {
		case <-ctx.Done():
			return fmt.Errorf("mapbackend: follow the registry: %w", ctx.Err())
		case <-b.done:
			return fmt.Errorf("mapbackend: follow the registry: %w", discovery.ErrClosed)
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

// ReadLease implements discovery.OperatorView. The map has no leases:
// every name reads as not found.
func (b *Backend) ReadLease(ctx context.Context, lease string) (discovery.LeaseInfo, error) {
	r := b.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := b.usableLocked(ctx); err != nil {
		return discovery.LeaseInfo{}, fmt.Errorf("mapbackend: read lease %q: %w", lease, err)
	}
	return discovery.LeaseInfo{}, nil
}

// Where implements discovery.OperatorView.
func (b *Backend) Where() string { return "in a mapbackend.Registry" }

// EntryOf implements discovery.OperatorView.
func (b *Backend) EntryOf(k discovery.Key) string { return "map entry " + k.String() }
