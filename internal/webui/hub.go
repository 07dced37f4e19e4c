package webui

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
)

// rewatchDelay is how long the view waits before it asks the registry
// again after a follow, a watch or a finder failed or ended on its own.
const rewatchDelay = time.Second

// publishEvery is the least time between two events to one stream: the
// changes within it go out together, a little later.
const publishEvery = 50 * time.Millisecond

// hub holds the state every browser sees and owns the goroutines that
// keep it: one follower of the whole registry (the view's
// FollowRegistry) and one reader of leases. Each stream (client) is told
// which services and leases changed since it last wrote, and sends those
// alone.
type hub struct {
	ctx  context.Context
	view discovery.OperatorView
	o    options
	log  hclog.Logger
	wg   *sync.WaitGroup

	wake chan struct{} // capacity 1: a stream opened, or a lease is new (the lease reader)

	mu        sync.Mutex
	services  map[string]*service
	leases    map[string]*lease // by lease ID, for the instances shown
	loaded    bool              // the registry has been read once
	problem   error             // the registry cannot be read right now
	downSince time.Time         // when problem was first seen, zero while reachable
	clients   map[*client]struct{}
}

// service is one service, its instances sorted by ID.
type service struct {
	name      string
	instances []instance
	known     bool // a first set has arrived
}

// instance is one instance and the lease that holds it ("": none, or not
// known).
type instance struct {
	discovery.Instance
	lease string
}

// lease is what the view knows of one lease: how much time it had left
// when it was last read, and what the pages were last told.
type lease struct {
	refs    int // instances shown that it holds
	read    bool
	readAt  time.Time
	left    time.Duration // when read; negative: expired (or gone)
	granted time.Duration // 0: not known

	sent     bool // the pages were told sentLeft at sentAt
	sentAt   time.Time
	sentLeft time.Duration
	expired  bool
}

func newHub(ctx context.Context, view discovery.OperatorView, o options) *hub {
	return &hub{
		ctx:      ctx,
		view:     view,
		o:        o,
		log:      o.logger,
		wake:     make(chan struct{}, 1),
		services: make(map[string]*service),
		leases:   make(map[string]*lease),
		clients:  make(map[*client]struct{}),
	}
}

// start starts following the registry, and reading its leases, in wg.
func (h *hub) start(wg *sync.WaitGroup) {
	h.wg = wg
	wg.Go(h.followLoop)
	wg.Go(h.leaseLoop)
}

// setProblemLocked records whether the registry can be read now (err nil:
// it can) and tells the pages if that changed.
func (h *hub) setProblemLocked(err error) {
	switch {
	case err == nil && h.problem == nil:
		return
	case err == nil:
		h.log.Info("registry reachable again")
		h.problem, h.downSince = nil, time.Time{}
	case h.problem != nil && h.problem.Error() == err.Error():
		return
	default:
		if h.problem == nil {
			h.downSince = time.Now()
			h.log.Warn("registry unreachable", "error", err)
		}
		h.problem = err
	}
	h.markStatusLocked()
}

// setInstancesLocked records the new set of service name (sorted or not)
// and tells the pages, if it changed. An empty set removes the service.
func (h *hub) setInstancesLocked(s *service, set []instance) {
	slices.SortFunc(set, func(a, b instance) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	changed := !s.known || !sameInstances(s.instances, set)
	for _, in := range set {
		h.refLeaseLocked(in.lease, +1)
	}
	for _, in := range s.instances {
		h.refLeaseLocked(in.lease, -1)
	}
	s.instances, s.known = set, true
	if changed {
		h.markServiceLocked(s.name)
	}
}

// refLeaseLocked counts one more (d=1) or one fewer (d=-1) instance held
// by id, and forgets a lease that holds none.
func (h *hub) refLeaseLocked(id string, d int) {
	if id == "" {
		return
	}
	l := h.leases[id]
	if l == nil {
		if d < 0 {
			return
		}
		l = &lease{}
		h.leases[id] = l
		h.wakeLeases()
	}
	l.refs += d
	if l.refs <= 0 {
		delete(h.leases, id)
	}
}

// wakeLeases tells the lease reader there is something to read.
func (h *hub) wakeLeases() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func sameInstances(a, b []instance) bool {
	return slices.EqualFunc(a, b, func(x, y instance) bool {
		return x.lease == y.lease && x.Equal(y.Instance)
	})
}

// leaseRead records a read of lease id: left is the time it had left
// (negative: expired or gone), granted its TTL (0: not known). The pages
// are told only when what they show would be off by a second or more, or
// the lease expired: a lease renewed on time reads as the countdown they
// already show until it is renewed.
func (h *hub) leaseRead(id string, left, granted time.Duration, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.leases[id]
	if l == nil {
		return
	}
	l.read, l.readAt, l.left, l.granted = true, at, left, granted
	expired := left < 0
	if l.sent && expired == l.expired {
		shown := l.sentLeft - at.Sub(l.sentAt)
		if d := left - shown; d < time.Second && d > -time.Second {
			return
		}
	}
	l.sent, l.sentAt, l.sentLeft, l.expired = true, at, left, expired
	h.markLeaseLocked(id)
}

// forgetLeasesLocked marks every lease as not read (no page is open, so
// they are not read: a page that opens later must not count down from
// old values), and tells the pages.
func (h *hub) forgetLeasesLocked() {
	for id, l := range h.leases {
		if l.read || l.sent {
			*l = lease{refs: l.refs}
			h.markLeaseLocked(id)
		}
	}
}

// The state as the page reads it. A stream opens with an event "state"
// holding all of it; then each event holds what changed: "services" (the
// whole set of each service that changed; an empty set: the service is
// gone), "leases" (each lease read again) and "status".
type (
	stateJSON struct {
		Registry string        `json:"registry"`
		Status   statusJSON    `json:"status"`
		Services []serviceJSON `json:"services"`
		// Leases holds the leases read, by ID.
		Leases map[string]*leaseJSON `json:"leases"`
	}
	statusJSON struct {
		// Loaded: the registry has been read once (before that, no
		// service is not the same as no service registered).
		Loaded    bool   `json:"loaded"`
		Reachable bool   `json:"reachable"`
		Problem   string `json:"problem,omitempty"`
		// Since is when the registry was first found unreachable, in
		// milliseconds since the Unix epoch, by the server's clock.
		Since int64 `json:"since,omitempty"`
	}
	serviceJSON struct {
		Name      string         `json:"name"`
		Instances []instanceJSON `json:"instances"`
	}
	instanceJSON struct {
		ID       string      `json:"id"`
		Address  string      `json:"address"`
		Metadata [][2]string `json:"metadata"` // sorted by key
		// Condition is serving (omitted), not_ready, draining or
		// maintenance; Reason says why, if the instance (or the
		// operator) said.
		Condition discovery.Condition `json:"condition,omitempty"`
		Reason    string              `json:"reason,omitempty"`
		// Weight is the instance's share of new traffic, always given
		// (the default when unset); Zone is omitted when unset.
		Weight int    `json:"weight"`
		Zone   string `json:"zone,omitempty"`
		// Lease is the ID of the lease that holds it; empty for none.
		Lease string `json:"lease,omitempty"`
	}
	leaseJSON struct {
		// TTLMillis is the time left on the lease when the event was
		// sent, as last read. Once it has counted down to 0 the lease
		// has not been read recently: it is not known to have expired.
		TTLMillis int64 `json:"ttl_ms"`
		// GrantedMillis is the lease's full TTL, 0 if not known.
		GrantedMillis int64 `json:"granted_ms,omitempty"`
		// Expired: the lease was read and had expired.
		Expired bool `json:"expired,omitempty"`
	}
)

func (h *hub) statusLocked() statusJSON {
	st := statusJSON{Loaded: h.loaded, Reachable: h.problem == nil}
	if h.problem != nil {
		st.Problem = h.problem.Error()
		st.Since = h.downSince.UnixMilli()
	}
	return st
}

func (h *hub) serviceLocked(name string) serviceJSON {
	sj := serviceJSON{Name: name, Instances: []instanceJSON{}}
	s := h.services[name]
	if s == nil || !s.known {
		return sj
	}
	for _, in := range s.instances {
		ij := instanceJSON{ID: in.ID, Address: in.Address, Metadata: make([][2]string, 0, len(in.Metadata)),
			Condition: in.Condition, Reason: in.Reason, Weight: in.Weight, Zone: in.Zone, Lease: in.lease}
		if ij.Weight == 0 {
			ij.Weight = discovery.DefaultWeight
		}
		for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
			ij.Metadata = append(ij.Metadata, [2]string{k, in.Metadata[k]})
		}
		sj.Instances = append(sj.Instances, ij)
	}
	return sj
}

// leaseLocked returns what the pages are told of lease id, nil if it has
// not been read.
func (h *hub) leaseLocked(id string, now time.Time) *leaseJSON {
	l := h.leases[id]
	if l == nil || !l.sent {
		return nil
	}
	lj := &leaseJSON{TTLMillis: (l.sentLeft - now.Sub(l.sentAt)).Milliseconds(), GrantedMillis: l.granted.Milliseconds(), Expired: l.expired}
	if l.expired {
		lj.TTLMillis = 0
	}
	return lj
}

// snapshotLocked encodes the whole state.
func (h *hub) snapshotLocked() []byte {
	st := stateJSON{Registry: h.o.name, Status: h.statusLocked(), Services: []serviceJSON{}, Leases: map[string]*leaseJSON{}}
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(h.services)) {
		if s := h.services[name]; s.known && len(s.instances) > 0 {
			st.Services = append(st.Services, h.serviceLocked(name))
		}
	}
	for id := range h.leases {
		if lj := h.leaseLocked(id, now); lj != nil {
			st.Leases[id] = lj
		}
	}
	return h.encode(st)
}

// encode returns v as JSON.
func (h *hub) encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: strings, numbers, and maps and slices of them
		h.log.Error("cannot encode the state", "error", err)
		return []byte("{}")
	}
	return b
}
