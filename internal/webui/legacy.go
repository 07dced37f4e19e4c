package webui

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// This file follows a Registry that is not a RegistryFollower: one
// goroutine finds services (the Registry's ServiceFinder, or listings),
// and one follower per service, at most maxFollowed of them, watches it
// and reads the TTLs of its instances. Each instance with a TTL gets a
// lease of its own in the hub, named after it.

// emptyGrace is how long a service without instances, and no longer
// listed or found, stays followed (hidden from the page) before its
// follower ends: a service whose instances come back within it keeps its
// watcher. It is a variable for the tests.
var emptyGrace = time.Minute

// Reads of a service's TTLs (Instances) are spaced over the whole hub by
// ttlSpacing for every ttlBatch instances read, so that they cost the
// registry the TTLs of about 100 instances a second at most; a service's
// TTLs are read again ttlEvery after the last read, or later if the
// spacing holds them back.
const (
	ttlSpacing = 10 * time.Millisecond
	ttlBatch   = 1
	ttlEvery   = time.Second
)

// maxNotFollowed bounds how many names of services left out are kept, to
// count them.
const maxNotFollowed = 100_000

// legacyState is the hub's state for per-service followers (under hub.mu
// except ttlNext).
type legacyState struct {
	ttlMu   sync.Mutex
	ttlNext time.Time // the next free slot for a read of TTLs
}

// noteNotFollowed is the page's note when services are left out.
func noteNotFollowed(followed, left int) string {
	return fmt.Sprintf("showing %d services, not %d more: without a registry-wide watch the view follows at most that many, one watch each (roster ls lists them all)", followed, left)
}

// instanceLease is the lease the hub keeps for the TTL of one instance.
func instanceLease(service, id string) string { return service + "/" + id }

// startLegacy starts finding services in h.wg: with the Registry's
// ServiceFinder if it has one, else by listing.
func (h *hub) startLegacy() {
	if f, ok := h.reg.(ServiceFinder); ok {
		h.wg.Go(func() { h.findLoop(f) })
		return
	}
	h.wg.Go(h.scanLoop)
}

// findLoop follows the services the finder reports, calling it again
// after it fails, until the Handler is closed. Until the finder has read
// the registry, its error is the state's problem.
func (h *hub) findLoop(f ServiceFinder) {
	for {
		listed := false
		err := f.FindServices(h.ctx, func(names []string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			for _, name := range names {
				if discovery.ValidateName("Service", name) == nil {
					h.foundLocked(name)
				}
			}
			if !listed {
				listed = true
				h.listedLocked()
			}
		})
		if h.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("webui: FindServices returned no error")
		}
		h.mu.Lock()
		if !listed {
			h.setProblemLocked(err)
		} else {
			h.log.Warn("finding services stopped, starting again", "error", err, "retry_in", rewatchDelay)
		}
		h.mu.Unlock()
		select {
		case <-h.ctx.Done():
			return
		case <-time.After(rewatchDelay):
		}
	}
}

// listedLocked records that the services were read: the problem the
// finder or a listing had, if any, is over.
func (h *hub) listedLocked() {
	if !h.loaded {
		h.loaded = true
		h.markStatusLocked()
	}
	h.setProblemLocked(h.downServiceLocked())
}

// downServiceLocked returns the problem a service's watcher reports, if
// any.
func (h *hub) downServiceLocked() error {
	for _, s := range h.services {
		if s.down != nil {
			return s.down
		}
	}
	return nil
}

// foundLocked follows the service name, unless it is followed already
// or as many are followed as allowed.
func (h *hub) foundLocked(name string) {
	if s, ok := h.services[name]; ok {
		s.lastFound = time.Now()
		return
	}
	if len(h.services) >= h.o.maxFollowed {
		if _, ok := h.notFollow[name]; !ok && len(h.notFollow) < maxNotFollowed {
			h.notFollow[name] = struct{}{}
			h.markStatusLocked()
		}
		return
	}
	if _, ok := h.notFollow[name]; ok {
		delete(h.notFollow, name)
		h.markStatusLocked()
	}
	h.followLocked(name)
}

// scanLoop lists the services at once, then again every rescan interval
// while a stream is open, and at once when a stream opens.
func (h *hub) scanLoop() {
	t := time.NewTimer(h.o.rescan)
	defer t.Stop()
	h.scan()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.wake:
		case <-t.C:
		}
		if h.watched() {
			h.scan()
		}
		t.Reset(h.o.rescan)
	}
}

// scan lists the services and follows the new ones. (A service that is no
// longer listed ends its follower itself: see emptyGrace.)
func (h *hub) scan() {
	ctx, cancel := context.WithTimeout(h.ctx, h.o.requestTimeout)
	list, err := h.reg.Services(ctx)
	cancel()
	if h.ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.setProblemLocked(err)
		return
	}
	listed := make(map[string]bool, len(list))
	for _, s := range list {
		listed[s.Service] = true
		h.foundLocked(s.Service) // shown once its watcher has its first set
	}
	for name := range h.notFollow {
		if !listed[name] {
			delete(h.notFollow, name)
			h.markStatusLocked()
		}
	}
	h.listedLocked()
}

// followLocked starts following the service name.
func (h *hub) followLocked(name string) {
	ctx, cancel := context.WithCancel(h.ctx)
	s := &service{name: name, cancel: cancel, lastFound: time.Now()}
	h.services[name] = s
	h.wg.Go(func() { h.follow(ctx, s) })
}

// watchResult is one return of a Watcher's Next.
type watchResult struct {
	set []discovery.Instance
	err error
}

// follow keeps s up to date until ctx ends: its set from a Watcher, asked
// for again if it ends, and the TTLs of its instances.
func (h *hub) follow(ctx context.Context, s *service) {
	for ctx.Err() == nil {
		w, err := h.reg.Watch(ctx, s.name)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("cannot watch service", "service", s.name, "error", err, "retry_in", rewatchDelay)
			}
		} else {
			h.followWatcher(ctx, s, w)
			if ctx.Err() == nil {
				h.log.Warn("watch ended, watching again", "service", s.name, "retry_in", rewatchDelay)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(rewatchDelay):
		}
	}
}

// followWatcher follows s with w until ctx ends or w ends, and stops w.
func (h *hub) followWatcher(ctx context.Context, s *service, w discovery.Watcher) {
	results := make(chan watchResult)
	var reader sync.WaitGroup
	defer reader.Wait()
	defer w.Stop() // first: it unblocks the reader's Next
	reader.Go(func() {
		defer close(results)
		for {
			set, err := w.Next(ctx)
			if err != nil && !errors.Is(err, discovery.ErrUnavailable) {
				if ctx.Err() == nil {
					h.log.Warn("watch failed", "service", s.name, "error", err)
				}
				return
			}
			select {
			case results <- watchResult{set, err}:
			case <-ctx.Done():
				return
			}
		}
	})

	refresh := time.NewTimer(time.Hour) // the next read of the TTLs
	refresh.Stop()
	defer refresh.Stop()
	gone := time.NewTimer(time.Hour) // runs while s has no instances
	gone.Stop()
	defer gone.Stop()
	stale := false // a read came due while no stream was open
	for {
		arrived := h.arrivals()
		select {
		case <-ctx.Done():
			return
		case <-gone.C:
			if wait := h.dropIfGone(s); wait > 0 {
				gone.Reset(wait)
			} else if wait == 0 {
				return // dropped: ctx is cancelled
			}
			continue
		case r, ok := <-results:
			if !ok {
				return
			}
			if r.err != nil {
				h.setDown(s, r.err)
				continue
			}
			unread := h.setSet(s, r.set) // at once; the TTLs of new instances follow
			gone.Stop()
			if len(r.set) == 0 {
				gone.Reset(emptyGrace)
			}
			if !unread {
				continue
			}
			refresh.Reset(0)
			continue
		case <-refresh.C:
			if !h.watched() {
				// No page to read them for: forget the TTLs, which run out
				// unread, so that a page that opens shows them as not read
				// until they are read again.
				h.forgetTTLs(s)
				stale = true
				continue
			}
		case <-arrived:
			if !stale {
				continue
			}
		}
		stale = false
		if h.refreshTTLs(ctx, s) {
			refresh.Reset(ttlEvery)
		}
	}
}

// dropIfGone stops following s if it has had no instances, and has not
// been listed or found, for emptyGrace, and then returns 0. Otherwise it
// returns how long to wait before asking again, or -1 if s has instances.
func (h *hub) dropIfGone(s *service) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s || len(s.instances) > 0 {
		return -1
	}
	if wait := emptyGrace - time.Since(s.lastFound); wait > 0 {
		return wait
	}
	delete(h.services, s.name)
	s.cancel()
	return 0
}

// refreshTTLs reads the TTLs of s in the next free slot (see ttlSpacing)
// and records them. It returns whether s has TTLs to read again.
func (h *hub) refreshTTLs(ctx context.Context, s *service) bool {
	// Reserve the next slot, and hold the following ones for a time that
	// grows with the size of s; then wait for it without holding the lock,
	// so that Close does not wait for a queue.
	h.mu.Lock()
	n := len(s.instances)
	h.mu.Unlock()
	h.legacy.ttlMu.Lock()
	slot := h.legacy.ttlNext
	if now := time.Now(); slot.Before(now) {
		slot = now
	}
	h.legacy.ttlNext = slot.Add(ttlSpacing * time.Duration(max(1, (n+ttlBatch-1)/ttlBatch)))
	h.legacy.ttlMu.Unlock()
	if wait := time.Until(slot); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}

	rctx, cancel := context.WithTimeout(ctx, h.o.requestTimeout)
	at := time.Now()
	list, err := h.reg.Instances(rctx, s.name)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			h.log.Debug("cannot read TTLs", "service", s.name, "error", err)
		}
		return true
	}
	ttls := make(map[string]InstanceInfo, len(list))
	for _, in := range list {
		ttls[in.ID] = in
	}
	h.mu.Lock()
	if h.services[s.name] != s {
		h.mu.Unlock()
		return false
	}
	var set []instance
	changed, any := false, false
	for _, in := range s.instances {
		x := in
		if info, ok := ttls[in.ID]; ok && info.HasTTL {
			x.lease = instanceLease(s.name, in.ID)
			any = true
		} else if ok {
			x.lease = ""
		}
		changed = changed || x.lease != in.lease
		set = append(set, x)
	}
	if changed {
		h.setInstancesLocked(s, set)
	}
	h.mu.Unlock()
	for _, in := range set {
		if info := ttls[in.ID]; in.lease != "" && info.HasTTL {
			h.leaseRead(in.lease, info.TTL, 0, at)
		}
	}
	return any
}

// forgetTTLs marks the TTLs of s as not read, and tells the pages.
func (h *hub) forgetTTLs(s *service) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return
	}
	for _, in := range s.instances {
		if l := h.leases[in.lease]; l != nil && (l.read || l.sent) {
			*l = lease{refs: l.refs}
			h.markLeaseLocked(in.lease)
		}
	}
}

// setDown records that s's watcher reported the registry unreachable.
func (h *hub) setDown(s *service, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return
	}
	s.down = err
	h.setProblemLocked(err)
}

// setSet records a new set of s. Instances that s had already keep their
// leases; it returns whether some instance's TTL was never read.
func (h *hub) setSet(s *service, set []discovery.Instance) (unread bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return false
	}
	old := make(map[string]instance, len(s.instances))
	for _, in := range s.instances {
		old[in.ID] = in
	}
	instances := make([]instance, 0, len(set))
	for _, in := range set {
		x := instance{Instance: in}
		if o, ok := old[in.ID]; ok {
			x.lease = o.lease
		} else {
			unread = true
		}
		instances = append(instances, x)
	}
	h.setInstancesLocked(s, instances)
	if s.down != nil {
		s.down = nil
		h.setProblemLocked(h.downServiceLocked())
	}
	return unread
}
