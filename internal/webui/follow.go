package webui

import (
	"context"
	"errors"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// Reads of leases (ReadLease) are spaced over the whole Handler, so
// that an open page costs the registry about one read every leaseSpacing
// (100 a second) however large the registry, and a lease is read at most
// once every leaseEvery. roster's processes hold one lease for all their
// instances, so this is about the number of processes, not of instances.
// With more leases than can be read within leaseEvery, each is read in
// turn, the least recently read first: a page then shows some TTLs as not
// read recently, never a renewed lease as expired.
const (
	leaseSpacing = 10 * time.Millisecond
	leaseEvery   = time.Second
)

// followLoop follows the registry with the view's FollowRegistry, calling
// it again after it fails, until the Handler is closed.
func (h *hub) followLoop() {
	for {
		err := h.view.FollowRegistry(h.ctx, h.apply)
		if h.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("webui: FollowRegistry returned no error")
		}
		h.mu.Lock()
		if !h.loaded || h.problem != nil {
			h.setProblemLocked(err)
		} else {
			h.log.Warn("following the registry stopped, starting again", "error", err, "retry_in", rewatchDelay)
		}
		h.mu.Unlock()
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(rewatchDelay):
		}
	}
}

// apply takes one update from the view's FollowRegistry.
func (h *hub) apply(u discovery.RegistryUpdate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setProblemLocked(u.Unreachable)
	if u.Reset && !h.loaded {
		h.loaded = true
		h.markStatusLocked()
	}
	named := make(map[string]bool, len(u.Services))
	for _, set := range u.Services {
		named[set.Service] = true
		if discovery.ValidateName("Service", set.Service) != nil {
			continue
		}
		instances := make([]instance, 0, len(set.Instances))
		for _, in := range set.Instances {
			instances = append(instances, instance{Instance: in.Instance.Clone(), lease: in.Lease})
		}
		h.setInstancesLocked(h.serviceNamedLocked(set.Service), instances)
		if len(instances) == 0 {
			delete(h.services, set.Service)
		}
	}
	if u.Reset {
		for name, s := range h.services {
			if !named[name] {
				h.setInstancesLocked(s, nil)
				delete(h.services, name)
			}
		}
	}
}

// serviceNamedLocked returns the service name, recorded if new.
func (h *hub) serviceNamedLocked(name string) *service {
	s := h.services[name]
	if s == nil {
		s = &service{name: name}
		h.services[name] = s
	}
	return s
}

// leaseLoop reads the leases while a stream is open: each new lease at
// once, then each again once leaseEvery has passed since its last read,
// the least recently read first, one every leaseSpacing. While no stream
// is open it reads nothing and forgets what it read.
func (h *hub) leaseLoop() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		id, wait, open := h.nextLease()
		if !open {
			h.mu.Lock()
			h.forgetLeasesLocked()
			h.mu.Unlock()
		}
		if id == "" {
			if wait > 0 {
				t.Reset(wait)
			}
			select {
			case <-h.ctx.Done():
				return
			case <-h.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		h.readLease(id)
		t.Reset(leaseSpacing)
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// nextLease returns the lease to read now, or "" and how long to wait
// before one is due (0: until woken); open is false when no stream is
// open.
func (h *hub) nextLease() (id string, wait time.Duration, open bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) == 0 {
		return "", 0, false
	}
	var best *lease
	for lid, l := range h.leases {
		if best == nil || !l.read && best.read || l.read == best.read && l.readAt.Before(best.readAt) {
			best, id = l, lid
		}
	}
	if best == nil {
		return "", 0, true
	}
	if best.read {
		if wait := leaseEvery - time.Since(best.readAt); wait > 0 {
			return "", wait, true
		}
	}
	// Mark it as being read, so that a failed read waits its turn too.
	best.read, best.readAt = true, time.Now()
	return id, 0, true
}

// readLease reads lease id and records what it read.
func (h *hub) readLease(id string) {
	ctx, cancel := context.WithTimeout(h.ctx, h.o.requestTimeout)
	defer cancel()
	at := time.Now()
	info, err := h.view.ReadLease(ctx, id)
	if h.ctx.Err() != nil {
		return
	}
	if err != nil {
		// FollowRegistry says whether the registry is reachable.
		h.log.Debug("cannot read lease", "lease", id, "error", err)
		return
	}
	left := info.Left
	if !info.Found {
		left = -1
	}
	h.leaseRead(id, left, info.Granted, at)
}
