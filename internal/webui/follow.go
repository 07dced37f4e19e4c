package webui

import (
	"context"
	"errors"
	"time"
)

// Reads of leases (LeaseReader) are spaced over the whole Handler, so
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

// followLoop follows the registry with its RegistryFollower, calling it
// again after it fails, until the Handler is closed.
func (h *hub) followLoop() {
	for {
		err := h.follower.FollowRegistry(h.ctx, h.apply)
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

// apply takes one update from the RegistryFollower.
func (h *hub) apply(u RegistryUpdate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setProblemLocked(u.Unreachable)
	if u.Reset {
		if !h.loaded {
			h.loaded = true
			h.markStatusLocked()
		}
		sets := make(map[string][]instance)
		for _, in := range u.Put {
			sets[in.Service] = append(sets[in.Service], instance{Instance: in.Instance, lease: in.Lease})
		}
		for name, s := range h.services {
			if _, ok := sets[name]; !ok {
				h.setInstancesLocked(s, nil)
				delete(h.services, name)
			}
		}
		for name, set := range sets {
			h.setInstancesLocked(h.serviceNamedLocked(name), set)
		}
		return
	}
	changed := make(map[string]map[string]instance) // service -> ID -> instance, from the current sets
	get := func(name string) map[string]instance {
		m, ok := changed[name]
		if !ok {
			m = make(map[string]instance)
			if s := h.services[name]; s != nil {
				for _, in := range s.instances {
					m[in.ID] = in
				}
			}
			changed[name] = m
		}
		return m
	}
	for _, k := range u.Deleted {
		delete(get(k.Service), k.ID)
	}
	for _, in := range u.Put {
		get(in.Service)[in.ID] = instance{Instance: in.Instance, lease: in.Lease}
	}
	for name, m := range changed {
		set := make([]instance, 0, len(m))
		for _, in := range m {
			set = append(set, in)
		}
		s := h.serviceNamedLocked(name)
		h.setInstancesLocked(s, set)
		if len(set) == 0 {
			delete(h.services, name)
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
	info, err := h.leaseRd.ReadLease(ctx, id)
	if h.ctx.Err() != nil {
		return
	}
	if err != nil {
		// The RegistryFollower says whether the registry is reachable.
		h.log.Debug("cannot read lease", "lease", id, "error", err)
		return
	}
	left := info.Left
	if !info.Found {
		left = -1
	}
	h.leaseRead(id, left, info.Granted, at)
}
