package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roster-sd/roster/discovery"
)

var _ discovery.Maintainer = (*Backend)(nil)

// maintStore holds the operators' maintenance overrides of a Store, apart
// from its instances, as etcd and NATS keep them under keys of their own.
// Guarded by Store.mu. Its zero value is empty and ready.
type maintStore struct {
	overrides map[discovery.Key]*override
}

// override is one override, with the timer that ends it if it has a
// duration.
type override struct {
	m     discovery.Maintenance
	timer *time.Timer
}

// applyLocked merges the overrides of service into set.
func (ms *maintStore) applyLocked(service string, set []discovery.Instance) []discovery.Instance {
	var list []discovery.Maintenance
	for k, o := range ms.overrides {
		if k.Service == service {
			list = append(list, o.m)
		}
	}
	if list == nil {
		return set
	}
	return discovery.ApplyMaintenance(set, list)
}

// SetMaintenance implements discovery.Maintainer. An override with a
// duration ends by itself, as a registry ends a lease: a timer removes it
// and watchers see the change. It fails with ErrUnavailable during an
// outage, ctx's error if ctx has ended, and discovery.ErrClosed after
// Close; in each of these cases it changes nothing.
func (b *Backend) SetMaintenance(ctx context.Context, target discovery.Key, reason string, d time.Duration) error {
	if err := discovery.ValidateMaintenance(target, reason, d); err != nil {
		return fmt.Errorf("memory: set maintenance: %w", err)
	}
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.usableLocked(ctx, "set maintenance", target.Service); err != nil {
		return err
	}
	now := time.Now()
	o := &override{m: discovery.Maintenance{Service: target.Service, ID: target.ID, Reason: reason, Since: now}}
	if d > 0 {
		o.m.Until = now.Add(d)
		o.timer = time.AfterFunc(d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.maint.overrides[target] == o {
				s.removeMaintLocked(target)
			}
		})
	}
	if prev := s.maint.overrides[target]; prev != nil && prev.timer != nil {
		prev.timer.Stop()
	}
	if s.maint.overrides == nil {
		s.maint.overrides = make(map[discovery.Key]*override)
	}
	s.maint.overrides[target] = o
	s.rev++
	s.publishLocked(target.Service)
	return nil
}

// ClearMaintenance implements discovery.Maintainer. It fails as
// SetMaintenance does, and with an error wrapping
// discovery.ErrNoMaintenance when target has no override.
func (b *Backend) ClearMaintenance(ctx context.Context, target discovery.Key) error {
	if err := discovery.ValidateTarget(target); err != nil {
		return fmt.Errorf("memory: clear maintenance: %w", err)
	}
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.usableLocked(ctx, "clear maintenance", target.Service); err != nil {
		return err
	}
	if s.maint.overrides[target] == nil {
		return fmt.Errorf("memory: clear maintenance of %s: %w", target, discovery.ErrNoMaintenance)
	}
	s.removeMaintLocked(target)
	return nil
}

// ListMaintenance implements discovery.Maintainer.
func (b *Backend) ListMaintenance(ctx context.Context, service string) ([]discovery.Maintenance, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("memory: list maintenance: %w", err)
	}
	s := b.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.usableLocked(ctx, "list maintenance", service); err != nil {
		return nil, err
	}
	out := []discovery.Maintenance{}
	for k, o := range s.maint.overrides {
		if k.Service == service {
			out = append(out, o.m)
		}
	}
	slices.SortFunc(out, func(x, y discovery.Maintenance) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// removeMaintLocked drops target's override and tells the service's
// watchers.
func (s *Store) removeMaintLocked(target discovery.Key) {
	if o := s.maint.overrides[target]; o != nil && o.timer != nil {
		o.timer.Stop()
	}
	delete(s.maint.overrides, target)
	s.rev++
	s.publishLocked(target.Service)
}
