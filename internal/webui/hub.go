package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
)

// rewatchDelay is how long a service's follower waits before it asks for a
// new Watcher after Watch failed or a Watcher ended on its own.
const rewatchDelay = time.Second

// emptyGrace is how long a service without instances, and no longer
// listed or found, stays followed (hidden from the page) before its
// follower ends: a service whose instances come back within it keeps its
// watcher. It is a variable for the tests.
var emptyGrace = time.Minute

// Reads of leases (Instances) are spaced over the whole hub, so that a
// registry with many services or instances is not read in bursts: after a
// read of a service with n instances the next one waits ttlSpacing for
// every ttlBatch instances (at least ttlSpacing). A backend may ask for
// one TTL per instance (etcd: one per lease), so this bounds what an open
// page costs the registry to about ttlBatch/ttlSpacing (100) instances'
// TTLs a second, however large the registry; a large one shows TTLs that
// are read less often.
const (
	ttlSpacing = 100 * time.Millisecond
	ttlBatch   = 10
)

// publishEvery is the least time between two encodings of the state: the
// changes within it go out together, a little later.
const publishEvery = 50 * time.Millisecond

// ttlRetry is the least time between two reads of a service's leases: a
// read that failed, or a refresh that came due, waits for it.
const ttlRetry = time.Second

// hub holds the state every browser sees: one follower goroutine per
// service (its discovery.Watcher and its lease TTLs), one goroutine that
// finds services (the Registry's ServiceFinder, or listings), and the
// newest state encoded once for every stream.
type hub struct {
	ctx context.Context
	reg Registry
	o   options
	log hclog.Logger
	wg  *sync.WaitGroup

	wake chan struct{} // capacity 1: a stream opened, list the services now

	ttlMu   sync.Mutex // guards ttlNext
	ttlNext time.Time  // the next free slot for a read of leases (ttlSpacing)

	mu       sync.Mutex
	services map[string]*service
	scanErr  error // the last listing of services failed, or the finder could not read them
	clients  int
	notify   map[chan struct{}]struct{} // one per stream, capacity 1
	arrived  chan struct{}              // closed and replaced when a stream opens
	current  event                      // the newest state

	dirty, force bool          // a publication is asked for (guarded by mu)
	publishReq   chan struct{} // capacity 1: to the publisher
}

// service is one followed service.
type service struct {
	name      string
	cancel    context.CancelFunc
	known     bool       // a first set has arrived
	instances []instance // sorted by ID
	down      error      // the watcher reported the registry unreachable; cleared by its next set
	lastFound time.Time  // when a listing or the finder last named it
}

// instance is one instance with the time its lease runs out, if known.
type instance struct {
	discovery.Instance
	read    bool      // its TTL has been read (it may have none)
	expires time.Time // zero: no TTL known
}

// event is one encoded state, numbered from 1.
type event struct {
	id   uint64
	data []byte
}

func newHub(ctx context.Context, reg Registry, o options) *hub {
	return &hub{
		ctx:      ctx,
		reg:      reg,
		o:        o,
		log:      o.logger,
		wake:     make(chan struct{}, 1),
		services: make(map[string]*service),
		notify:   make(map[chan struct{}]struct{}),
		arrived:  make(chan struct{}),

		publishReq: make(chan struct{}, 1),
	}
}

// start publishes the first (empty) state and starts finding services in
// wg: with the Registry's ServiceFinder if it has one, else by listing.
func (h *hub) start(wg *sync.WaitGroup) {
	h.wg = wg
	h.mu.Lock()
	h.encodeLocked(false)
	h.mu.Unlock()
	wg.Go(h.publishLoop)
	if f, ok := h.reg.(ServiceFinder); ok {
		wg.Go(func() { h.findLoop(f) })
		return
	}
	wg.Go(h.scanLoop)
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
				if h.scanErr != nil {
					h.log.Info("found services again")
					h.scanErr = nil
					h.publishLocked()
				}
			}
		})
		if h.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("webui: FindServices returned no error")
		}
		h.mu.Lock()
		if !listed && (h.scanErr == nil || h.scanErr.Error() != err.Error()) {
			h.log.Warn("cannot find services", "error", err, "retry_in", rewatchDelay)
			h.scanErr = err
			h.publishLocked()
		} else if listed {
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

// foundLocked follows the service name, unless it is followed already.
func (h *hub) foundLocked(name string) {
	if s, ok := h.services[name]; ok {
		s.lastFound = time.Now()
		return
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

// watched reports whether a stream is open.
func (h *hub) watched() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clients > 0
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
		if h.scanErr == nil {
			h.log.Warn("cannot list services", "error", err)
		}
		if h.scanErr == nil || h.scanErr.Error() != err.Error() {
			h.scanErr = err
			h.publishLocked()
		}
		return
	}
	changed := h.scanErr != nil
	if changed {
		h.log.Info("listed services again")
	}
	h.scanErr = nil
	for _, s := range list {
		h.foundLocked(s.Service) // shown once its watcher has its first set
	}
	if changed {
		h.publishLocked()
	}
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
// for again if it ends, and the TTLs of its leases.
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
		read := false // the TTLs were just read (or the read failed)
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
			h.setInstances(s, r.set) // at once; the TTLs of new instances follow
			gone.Stop()
			if len(r.set) == 0 {
				gone.Reset(emptyGrace)
			}
		case <-refresh.C:
			if !h.watched() {
				// No page to read them for: forget the TTLs, which run out
				// unread, so that a page that opens shows them as not read
				// until they are read again (not counting down from old
				// values, nor expired while other services are read first).
				h.forgetTTLs(s)
				stale = true
				continue
			}
			h.refreshTTLs(ctx, s)
			read = true
		case <-arrived:
			if !stale {
				continue
			}
			h.refreshTTLs(ctx, s)
			read = true
		}
		stale = false
		refresh.Stop()
		if wait, ok := h.nextRefresh(s); ok {
			if read {
				// A read that failed, or an instance that came after the
				// read (the watcher tells soon), waits for the next try.
				wait = max(wait, ttlRetry)
			}
			refresh.Reset(wait)
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

// arrivals returns a channel closed when the next stream opens.
func (h *hub) arrivals() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.arrived
}

// readTTLs reads the instances of service with their TTLs; read is false
// if the read failed.
func (h *hub) readTTLs(ctx context.Context, service string) (ttls map[string]InstanceInfo, read bool) {
	ctx, cancel := context.WithTimeout(ctx, h.o.requestTimeout)
	defer cancel()
	list, err := h.reg.Instances(ctx, service)
	if err != nil {
		if ctx.Err() == nil || h.ctx.Err() == nil {
			h.log.Debug("cannot read leases", "service", service, "error", err)
		}
		return nil, false
	}
	ttls = make(map[string]InstanceInfo, len(list))
	for _, in := range list {
		ttls[in.ID] = in
	}
	return ttls, true
}

// refreshTTLs reads the TTLs of s in the next free slot (see ttlSpacing)
// and publishes them.
func (h *hub) refreshTTLs(ctx context.Context, s *service) {
	// Reserve the next slot, and hold the following ones for a time that
	// grows with the size of s; then wait for it without holding the lock,
	// so that Close does not wait for a queue.
	h.mu.Lock()
	n := len(s.instances)
	h.mu.Unlock()
	h.ttlMu.Lock()
	slot := h.ttlNext
	if now := time.Now(); slot.Before(now) {
		slot = now
	}
	h.ttlNext = slot.Add(ttlSpacing * time.Duration(max(1, (n+ttlBatch-1)/ttlBatch)))
	h.ttlMu.Unlock()
	if wait := time.Until(slot); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}

	ttls, read := h.readTTLs(ctx, s.name)
	if !read {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return
	}
	now := time.Now()
	anyTTL := false
	for i := range s.instances {
		in, ok := ttls[s.instances[i].ID]
		if !ok {
			continue // came after the read: read it next time
		}
		s.instances[i].read = true
		s.instances[i].expires = time.Time{}
		if in.HasTTL {
			s.instances[i].expires = now.Add(in.TTL)
			anyTTL = true
		}
	}
	if anyTTL {
		// Sent even if it reads as the last state did (a lease renewed to
		// the same TTL): the pages have counted that one down since.
		h.forcePublishLocked()
	} else {
		h.publishLocked()
	}
}

// forgetTTLs marks the TTLs of s as not read, and publishes that.
func (h *hub) forgetTTLs(s *service) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return
	}
	for i := range s.instances {
		s.instances[i].read, s.instances[i].expires = false, time.Time{}
	}
	h.publishLocked()
}

// setDown records that s's watcher reported the registry unreachable.
func (h *hub) setDown(s *service, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return
	}
	s.down = err
	h.publishLocked()
}

// setInstances records a new set of s and publishes it. Instances that s
// had already keep their TTLs; the TTLs of new ones are read next (see
// nextRefresh).
func (h *hub) setInstances(s *service, set []discovery.Instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return
	}
	old := make(map[string]instance, len(s.instances))
	for _, in := range s.instances {
		old[in.ID] = in
	}
	instances := make([]instance, 0, len(set))
	for _, in := range set {
		x := instance{Instance: in}
		if o, ok := old[in.ID]; ok {
			x.read, x.expires = o.read, o.expires
		}
		instances = append(instances, x)
	}
	s.instances, s.known, s.down = instances, true, nil
	h.publishLocked()
}

// nextRefresh returns how long to wait before reading the TTLs of s
// again, and false if there is no need to: at once while an instance's
// TTL is unread, else once half the time left on its soonest lease has
// passed (at least ttlRetry). A lease that is renewed (every third of its
// TTL, for roster's backends) is then never shown running low, and one
// that is not is read ever sooner as it runs out.
func (h *hub) nextRefresh(s *service) (time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.services[s.name] != s {
		return 0, false
	}
	now := time.Now()
	var due time.Time
	for _, in := range s.instances {
		if !in.read {
			return 0, true
		}
		if in.expires.IsZero() {
			continue
		}
		at := now.Add(in.expires.Sub(now) / 2)
		if due.IsZero() || at.Before(due) {
			due = at
		}
	}
	if due.IsZero() {
		return 0, false
	}
	return max(due.Sub(now), ttlRetry), true
}

// The state as the page reads it, one server-sent event.
type (
	stateJSON struct {
		Registry  string        `json:"registry"`
		Reachable bool          `json:"reachable"`
		Problem   string        `json:"problem,omitempty"`
		Services  []serviceJSON `json:"services"`
	}
	serviceJSON struct {
		Name      string         `json:"name"`
		Instances []instanceJSON `json:"instances"`
	}
	instanceJSON struct {
		ID       string      `json:"id"`
		Address  string      `json:"address"`
		Metadata [][2]string `json:"metadata"` // sorted by key
		// TTLMillis is the time left on the lease when the event was
		// sent, in milliseconds: negative once expired, null if unknown.
		TTLMillis *int64 `json:"ttl_ms"`
	}
)

// publishLocked has the publisher encode the state and wake every
// stream, unless the state is the same as the current one. Callers publish
// only when the state changed: the TTLs, counted from now, may differ at
// every call.
func (h *hub) publishLocked() { h.requestLocked(false) }

// forcePublishLocked is publishLocked even when the state is the same.
func (h *hub) forcePublishLocked() { h.requestLocked(true) }

func (h *hub) requestLocked(force bool) {
	h.dirty = true
	h.force = h.force || force
	select {
	case h.publishReq <- struct{}{}:
	default: // the publisher has a request pending: it will encode the newest state
	}
}

// publishLoop encodes the state when asked, at most once every
// publishEvery: a burst of changes (a rolling deploy) costs one encoding
// of the whole state per interval, not one per change.
func (h *hub) publishLoop() {
	t := time.NewTimer(publishEvery)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.publishReq:
		}
		h.mu.Lock()
		if h.dirty {
			h.encodeLocked(h.force)
			h.dirty, h.force = false, false
		}
		h.mu.Unlock()
		t.Reset(publishEvery)
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// encodeLocked encodes the state and wakes every stream, unless force is
// false and the state is the same as the current one.
func (h *hub) encodeLocked(force bool) {
	st := stateJSON{Registry: h.o.name, Reachable: true, Services: []serviceJSON{}}
	if h.scanErr != nil {
		st.Reachable, st.Problem = false, h.scanErr.Error()
	}
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(h.services)) {
		s := h.services[name]
		if s.down != nil && st.Reachable {
			st.Reachable, st.Problem = false, s.down.Error()
		}
		if !s.known || len(s.instances) == 0 {
			continue // a service is shown while it has instances, as ls shows it
		}
		sj := serviceJSON{Name: name, Instances: make([]instanceJSON, 0, len(s.instances))}
		for _, in := range s.instances {
			ij := instanceJSON{ID: in.ID, Address: in.Address, Metadata: make([][2]string, 0, len(in.Metadata))}
			for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
				ij.Metadata = append(ij.Metadata, [2]string{k, in.Metadata[k]})
			}
			if !in.expires.IsZero() {
				ms := in.expires.Sub(now).Milliseconds()
				ij.TTLMillis = &ms
			}
			sj.Instances = append(sj.Instances, ij)
		}
		st.Services = append(st.Services, sj)
	}
	data, err := json.Marshal(st)
	if err != nil {
		h.log.Error("cannot encode the state", "error", err) // cannot happen: plain strings and numbers
		return
	}
	if !force && bytes.Equal(data, h.current.data) {
		return
	}
	h.current = event{id: h.current.id + 1, data: data}
	for ch := range h.notify {
		select {
		case ch <- struct{}{}:
		default: // already pending: the stream will read the newest state
		}
	}
}
