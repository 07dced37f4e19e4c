package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// Service names used by the simulated fleet.
const (
	benchWatchedService = "bench-watched" // the service the watchers watch
	benchOtherService   = "bench-fleet"   // every other registration
)

// traffic counts what the simulated clients send and receive, client side,
// as it goes on the wire: requests (for etcd, unary calls and messages sent
// on streams: watch creations, lease keep-alives; for NATS, the protocol's
// publications and subscriptions), full reads of a service (etcd's Range
// calls), watch events received and connection attempts. The per-backend
// part (etcd.go, nats.go) feeds it. A request that waits for a connection
// counts when it is sent, not when it is made.
type traffic struct {
	requestsSent, ranges, events, dials atomic.Int64

	mu       sync.Mutex
	byMethod map[string]int64 // requests per method, short name
}

// requests is the number of requests sent.
func (t *traffic) requests() int64 { return t.requestsSent.Load() }

// count records one request sent to method (a short name); a read is a
// full read of a service.
func (t *traffic) count(method string, read bool) {
	t.requestsSent.Add(1)
	if read {
		t.ranges.Add(1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byMethod == nil {
		t.byMethod = make(map[string]int64)
	}
	t.byMethod[method]++
}

// methods returns a copy of the requests per method so far.
func (t *traffic) methods() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.byMethod)
}

// procTraffic counts the requests one simulated process sends, by method
// (short name), so that a recovery's cost is measured per process, up to
// the moment that process was back, and feeds the fleet's traffic too.
type procTraffic struct {
	fleet *traffic

	mu       sync.Mutex
	byMethod map[string]int64
	// recent are the newest requests, with when they went out, so that
	// methodsUpTo can take back those sent after a moment already past
	// when the bench learns of it (a status arrives late on a busy
	// machine).
	recent [recentRequests]sentRequest
	next   int // where the next request goes in recent
}

// recentRequests is how many of a process's newest requests procTraffic
// remembers the time of.
const recentRequests = 16

// sentRequest is one request of a process and when it went out.
type sentRequest struct {
	at     time.Time
	method string
}

// count records one request of the process (see traffic.count).
func (p *procTraffic) count(method string, read bool) {
	p.fleet.count(method, read)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byMethod == nil {
		p.byMethod = make(map[string]int64)
	}
	p.byMethod[method]++
	p.recent[p.next] = sentRequest{at: now, method: method}
	p.next = (p.next + 1) % recentRequests
}

// dial records one connection attempt of the process.
func (p *procTraffic) dial() { p.fleet.dials.Add(1) }

// event records n watch events received by the process.
func (p *procTraffic) event(n int) { p.fleet.events.Add(int64(n)) }

// methods returns a copy of the process's requests per method so far.
func (p *procTraffic) methods() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.byMethod)
}

// methodsUpTo returns the process's requests per method sent up to t, a
// moment shortly past: those of the newest that went out after t are
// taken back (if more than recentRequests did, the oldest of them stay
// counted).
func (p *procTraffic) methodsUpTo(t time.Time) map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := maps.Clone(p.byMethod)
	for _, r := range p.recent {
		if r.method != "" && r.at.After(t) {
			if out[r.method]--; out[r.method] == 0 {
				delete(out, r.method)
			}
		}
	}
	return out
}

// shortMethod is the last element of a full gRPC method name.
func shortMethod(method string) string {
	if i := strings.LastIndexByte(method, '/'); i >= 0 {
		return method[i+1:]
	}
	return method
}

// processBackend is what the simulator needs of each process's backend:
// roster's own interfaces, whichever backend implements them.
type processBackend interface {
	discovery.Backend
	discovery.StatusReporter
}

// simProcess is one simulated roster process: its own client and
// connection, its own Backend, its instances, and perhaps a watch.
type simProcess struct {
	index     int
	backend   processBackend
	release   func() error // releases what the backend does not own (etcd: its client)
	instances []discovery.Instance
	firstReg  time.Duration // latency of the first Register

	watcher discovery.Watcher // nil unless the process watches
	traffic *procTraffic      // the process's own requests

	mu          sync.Mutex
	states      map[discovery.Key]discovery.Status
	marked      bool      // markCut was called: the fault has begun
	left        bool      // an instance left StateRegistered since markCut
	recoveredAt time.Time // when all instances were registered again after leaving
	// recoveredReqs is the process's requests by method when it was
	// registered again (recoveredAt), for the cost of its own recovery.
	recoveredReqs map[string]int64
	// fellBack counts the times the process was registered again after
	// markCut and then left StateRegistered once more.
	fellBack int
	timeline []statusEvent // every status the process reported, in order
	// outSince is when the process last left "all instances registered"
	// since markCut (zero while all are); outTotal sums the spans it
	// spent so, ended ones only.
	outSince time.Time
	outTotal time.Duration
	set      []discovery.Instance
	exact    bool      // set is the expected set
	exactAt  time.Time // when set last became exact
}

// fleet owns the simulated processes and the goroutines that follow them.
type fleet struct {
	k        int // instances per process
	traffic  *traffic
	procs    []*simProcess
	expected []discovery.Instance // the watched service, sorted by ID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// staying is set when the fault was shorter than the TTL: a process
	// that stayed registered throughout is then back (at time 0).
	staying atomic.Bool
}

// newFleet creates n simulated processes through reg, conc at a time (a
// NATS backend connects and opens its bucket before New returns), each
// holding k instances; the first s registrations in fleet order (process
// i's instance j is registration i*k+j) form the watched service. Nothing
// is registered yet.
func newFleet(reg registry, n, k, s, conc int) (_ *fleet, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{k: k, traffic: &traffic{}, ctx: ctx, cancel: cancel}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	procs := make([]*simProcess, n)
	errs := make([]error, n)
	create := func(i int) {
		pt := &procTraffic{fleet: f.traffic}
		b, release, err := reg.newProcess(i, pt)
		if err != nil {
			errs[i] = fmt.Errorf("process %d: %w", i, err)
			return
		}
		procs[i] = &simProcess{index: i, backend: b, release: release, traffic: pt, states: make(map[discovery.Key]discovery.Status)}
	}
	// The first process alone, so that it creates the NATS bucket: NATS
	// Backends that open an absent bucket at the same moment can fail
	// with "stream not found" (err_code 10059), seen at 1000 processes.
	create(0)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	next.Store(1)
	for range min(max(conc, 1), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || errs[0] != nil {
					return
				}
				create(i)
			}
		})
	}
	wg.Wait()
	for _, p := range procs {
		if p != nil {
			f.procs = append(f.procs, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, p := range f.procs {
		for j := range k {
			svc := benchOtherService
			if i*k+j < s {
				svc = benchWatchedService
			}
			in := discovery.Instance{
				Service: svc,
				ID:      fmt.Sprintf("p%06d-%d", i, j),
				Address: fmt.Sprintf("10.%d.%d.%d:%d", i>>16&255, i>>8&255, i&255, 8000+j),
			}
			p.instances = append(p.instances, in)
			if svc == benchWatchedService {
				f.expected = append(f.expected, in)
			}
		}
		sub := p.backend.SubscribeStatus()
		f.wg.Add(1)
		go f.followStatus(p, sub)
	}
	slices.SortFunc(f.expected, func(a, b discovery.Instance) int { return strings.Compare(a.ID, b.ID) })
	return f, nil
}

// followStatus records p's registration states until the fleet closes.
func (f *fleet) followStatus(p *simProcess, sub discovery.StatusSubscription) {
	defer f.wg.Done()
	defer sub.Stop()
	for {
		st, err := sub.Next(f.ctx)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.states[st.Instance.Key()] = st
		ev := statusEvent{At: st.Since, Instance: st.Instance.ID, State: st.State.String(), Attempt: st.Attempt}
		if st.Err != nil {
			ev.Err = st.Err.Error()
		}
		p.timeline = append(p.timeline, ev)
		if st.State != discovery.StateRegistered {
			if p.left && !p.recoveredAt.IsZero() {
				p.fellBack++
			}
			if p.marked && p.outSince.IsZero() {
				p.outSince = st.Since
			}
			p.left = p.marked
			p.recoveredAt, p.recoveredReqs = time.Time{}, nil
		} else if p.allRegisteredLocked() {
			if p.left {
				p.recoveredAt = st.Since
				p.recoveredReqs = p.traffic.methodsUpTo(st.Since)
			}
			if !p.outSince.IsZero() {
				p.outTotal += st.Since.Sub(p.outSince)
				p.outSince = time.Time{}
			}
		}
		p.mu.Unlock()
	}
}

func (p *simProcess) allRegisteredLocked() bool {
	for _, in := range p.instances {
		if p.states[in.Key()].State != discovery.StateRegistered {
			return false
		}
	}
	return true
}

// register registers every process's instances, conc processes at a time,
// calling progress after each process. It returns the phase's duration.
func (f *fleet) register(ctx context.Context, conc int, progress func(done int)) (time.Duration, error) {
	start := time.Now()
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errMu      sync.Mutex
		errs       []error
	)
	for range min(conc, len(f.procs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(f.procs) || ctx.Err() != nil {
					return
				}
				p := f.procs[i]
				for j, in := range p.instances {
					t0 := time.Now()
					if err := p.backend.Register(ctx, in); err != nil {
						errMu.Lock()
						errs = append(errs, fmt.Errorf("register %s: %w", in.Key(), err))
						errMu.Unlock()
						break
					}
					if j == 0 {
						p.firstReg = time.Since(t0)
					}
				}
				progress(int(done.Add(1)))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return time.Since(start), errors.Join(errs...)
}

// watch starts a watch of the watched service on the first w processes
// and waits until every one has the exact set.
func (f *fleet) watch(ctx context.Context, w int) error {
	for _, p := range f.procs[:w] {
		wt, err := p.backend.Watch(f.ctx, benchWatchedService)
		if err != nil {
			return fmt.Errorf("process %d: watch: %w", p.index, err)
		}
		p.watcher = wt
		f.wg.Add(1)
		go f.followWatch(p)
	}
	return f.waitUntil(ctx, func() bool {
		for _, p := range f.procs[:w] {
			p.mu.Lock()
			ok := p.exact
			p.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
}

// followWatch records the set p's watcher sees until the fleet closes.
func (f *fleet) followWatch(p *simProcess) {
	defer f.wg.Done()
	defer p.watcher.Stop()
	for {
		set, err := p.watcher.Next(f.ctx)
		if err != nil {
			if f.ctx.Err() != nil || errors.Is(err, discovery.ErrClosed) {
				return
			}
			continue
		}
		exact := sameInstances(set, f.expected)
		p.mu.Lock()
		if exact && !p.exact {
			p.exactAt = time.Now()
		}
		p.set, p.exact = set, exact
		p.mu.Unlock()
	}
}

// sameInstances reports whether a and b (sorted by ID) hold the same
// instances at the same addresses.
func sameInstances(a, b []discovery.Instance) bool {
	return slices.EqualFunc(a, b, func(x, y discovery.Instance) bool {
		return x.Service == y.Service && x.ID == y.ID && x.Address == y.Address
	})
}

// markCut forgets what the processes went through before a cut.
func (f *fleet) markCut() {
	for _, p := range f.procs {
		p.mu.Lock()
		p.left, p.recoveredAt, p.recoveredReqs, p.fellBack = false, time.Time{}, nil, 0
		p.marked, p.outSince, p.outTotal = true, time.Time{}, 0
		// A watcher keeps its set: if it never sees it change, it was
		// exact throughout (time 0 after heal).
		p.exactAt = time.Time{}
		p.mu.Unlock()
	}
}

// recovered reports how many processes are registered again after leaving
// since markCut, and how many watchers have the exact set again.
func (f *fleet) recovered() (procs, watchers int) {
	for _, p := range f.procs {
		p.mu.Lock()
		if p.backLocked(f.staying.Load()) {
			procs++
		}
		if p.watcher != nil && p.exact {
			watchers++
		}
		p.mu.Unlock()
	}
	return procs, watchers
}

// backLocked reports whether p is registered again after markCut: it left
// and came back, or (staying) it never left.
func (p *simProcess) backLocked(staying bool) bool {
	if !p.allRegisteredLocked() {
		return false
	}
	return (p.left && !p.recoveredAt.IsZero()) || (staying && !p.left)
}

// recoveryTimes returns, from heal, the time each process took to be
// registered again and the time each watcher took to have the exact set.
func (f *fleet) recoveryTimes(heal time.Time) (reg, watch []time.Duration) {
	for _, p := range f.procs {
		p.mu.Lock()
		switch {
		case !p.recoveredAt.IsZero():
			reg = append(reg, max(0, p.recoveredAt.Sub(heal)))
		case p.backLocked(f.staying.Load()):
			reg = append(reg, 0)
		}
		if p.watcher != nil && p.exact {
			watch = append(watch, max(0, p.exactAt.Sub(heal)))
		}
		p.mu.Unlock()
	}
	return reg, watch
}

// waitUntil polls cond every 20 ms until it holds or ctx ends.
func (f *fleet) waitUntil(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// registrations returns the key of every registration of the fleet.
func (f *fleet) registrations() []discovery.Key {
	var out []discovery.Key
	for _, p := range f.procs {
		for _, in := range p.instances {
			out = append(out, in.Key())
		}
	}
	return out
}

// Close closes every simulated process (which revokes its lease) and its
// client, and waits for the fleet's goroutines. It is safe to call twice.
func (f *fleet) Close() error {
	var (
		errs  []error
		errMu sync.Mutex
		wg    sync.WaitGroup
		slots = make(chan struct{}, 64) // Backends closing at once
	)
	// In parallel: a process cut off waits up to its RequestTimeout to
	// revoke its lease, which one after the other would take an hour.
	for _, p := range f.procs {
		if p.backend == nil {
			continue
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := p.backend.Close(); err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("process %d: %w", p.index, err))
				errMu.Unlock()
			}
			p.backend = nil
		})
	}
	wg.Wait()
	f.cancel()
	f.wg.Wait()
	for _, p := range f.procs {
		if p.release != nil {
			if err := p.release(); err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("process %d: close client: %w", p.index, err))
			}
			p.release = nil
		}
	}
	return errors.Join(errs...)
}

// outTimes returns how many processes left "all instances registered"
// since markCut, and for each of them the time it spent so until end.
func (f *fleet) outTimes(end time.Time) (left int, out []time.Duration) {
	for _, p := range f.procs {
		p.mu.Lock()
		total := p.outTotal
		if !p.outSince.IsZero() {
			total += end.Sub(p.outSince)
		}
		if p.left || total > 0 {
			left++
			out = append(out, total)
		}
		p.mu.Unlock()
	}
	return left, out
}
