package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// FaultHarness is the optional fault-injection part of a harness, in the
// style of go-cloud's drivertest: a registry of its own that the suite may
// stop, start again and cut off from the backends, so that the fault
// scenarios every backend must survive are written once, here, and run on
// every backend whose test supplies one (Capabilities.Faults).
//
// The backends made by MakeBackend reach the registry through a link that
// Cut cuts (a proxy, for instance); those made by MakeObserver reach it
// directly, so that the suite can look at the registry while the others
// are cut off. Every backend is built with the TTL and retry bounds of the
// FaultOptions the harness was made with. Its methods are called from the
// subtest's goroutine only.
type FaultHarness interface {
	Harness

	// MakeObserver returns a new handle that reaches the registry
	// directly, never through the link Cut cuts: another process on the
	// registry's side of a partition. The suite closes it before the
	// harness.
	MakeObserver(ctx context.Context) (discovery.Backend, error)

	// Stop stops the registry as a clean shutdown does, keeping its data
	// (keys, leases, streams) for Start, and returns once it has stopped:
	// every client's connection is closed and new ones are refused.
	Stop(ctx context.Context) error

	// Start starts a stopped registry again on the same address with the
	// same data, and returns once it serves requests.
	Start(ctx context.Context) error

	// Cut cuts the link between the backends of MakeBackend and the
	// registry, which keeps running (and so expires what nobody renews),
	// until Heal. With CutReject every connection is reset and new ones
	// are refused at once; with CutBlackhole connections stay open and
	// nothing gets through either way, as in a network partition.
	Cut(mode CutMode)

	// Heal ends Cut.
	Heal()

	// Remove deletes the instance key names from the registry, as
	// another client or an operator would (etcdctl del, nats kv del). It
	// goes directly to the registry, and returns an error if the
	// registry did not hold the instance.
	Remove(ctx context.Context, key discovery.Key) error
}

// CutMode is how FaultHarness.Cut cuts the link.
type CutMode int

const (
	// CutReject resets every connection and refuses new ones, as a
	// firewall that rejects traffic or a host whose port is closed.
	CutReject CutMode = iota
	// CutBlackhole silences the link both ways without closing anything,
	// as a network partition does.
	CutBlackhole
)

// String returns "reject" or "blackhole".
func (m CutMode) String() string {
	if m == CutBlackhole {
		return "blackhole"
	}
	return "reject"
}

// FaultOptions are the timings the suite asks a FaultHarness to build its
// backends with, scaled down so that each fault scenario takes seconds.
type FaultOptions struct {
	// TTL is the liveness of an instance no one renews: etcd's lease TTL,
	// NATS's per-key TTL.
	TTL time.Duration

	// MaxRetryDelay caps the backends' retry backoff (retry.Policy.Max),
	// and bounds their request timeout, so that a backend notices the
	// registry is back within about that long.
	MaxRetryDelay time.Duration
}

// FaultHarnessMaker returns a fresh FaultHarness on a registry of its own,
// with backends built as opts says. The suite calls it once per fault
// subtest, from parallel subtests; t is the subtest's.
type FaultHarnessMaker func(ctx context.Context, t *testing.T, opts FaultOptions) (FaultHarness, error)

// Fault timings. faultTTL is short, so that scenarios that wait out a TTL
// take seconds; restartTTL leaves room for a registry's stop and start
// under -race on a busy machine, which the "restart within the TTL"
// scenario must fit in.
const (
	faultTTL        = 2 * time.Second
	restartTTL      = 4 * time.Second
	faultRetryDelay = 500 * time.Millisecond
)

// faultSubtest is one fault scenario: it gets a FaultHarness made with
// opts instead of the env's Harness.
type faultSubtest struct {
	name  string
	needs Capabilities
	ttl   time.Duration
	run   func(t *testing.T, f *faultEnv)
}

// faultSubtests lists the fault scenarios, run after the other subtests.
var faultSubtests = []faultSubtest{
	{name: "FaultRestartWithinTTLKeepsTheKey", ttl: restartTTL, run: testFaultRestartWithinTTL},
	{name: "FaultDownLongerThanTTLComesBack", ttl: faultTTL, run: testFaultDownLongerThanTTL},
	{name: "FaultExternalDeleteIsRestored", ttl: faultTTL, run: testFaultExternalDelete},
	{name: "FaultSameInstanceFromTwoBackendsDoesNotFlap", needs: Capabilities{Conflict: true}, ttl: faultTTL, run: testFaultTwoBackendsDoNotFlap},
	{name: "FaultBlackholeLongerThanTTL", ttl: faultTTL, run: testFaultBlackhole},
	{name: "FaultWatchReportsOutageThenExactSet", ttl: faultTTL, run: testFaultWatchOutage},
	{name: "FaultCloseInAnOutageNamesWhatItLeft", ttl: faultTTL, run: testFaultCloseInAnOutage},
	{name: "FaultDeregisterInAnOutageWaitsForTheRegistry", ttl: faultTTL, run: testFaultDeregisterInAnOutage},
	{name: "FaultMaintenanceSurvivesRestart", ttl: restartTTL, run: testFaultMaintenanceSurvivesRestart},
	{name: "FaultFollowRegistryReportsOutage", ttl: faultTTL, run: testFaultFollowRegistryReportsOutage},
	{name: "FaultWipeResetsTheWatchersRevisions", ttl: faultTTL, run: testFaultWipeResetsTheWatchersRevisions},
}

// faultsAsSubtests wraps the fault scenarios as subtests of Run: each skips
// unless the backend's test supplies Capabilities.Faults, and otherwise
// makes its own FaultHarness.
func faultsAsSubtests() []subtest {
	var sts []subtest
	for _, fs := range faultSubtests {
		sts = append(sts, subtest{
			name:   fs.name,
			needs:  fs.needs,
			faults: true,
			runFaults: func(t *testing.T, caps Capabilities) {
				f := newFaultEnv(t, caps, FaultOptions{TTL: fs.ttl, MaxRetryDelay: faultRetryDelay})
				fs.run(t, f)
			},
		})
	}
	return sts
}

// faultEnv is an env whose harness is a FaultHarness.
type faultEnv struct {
	*env
	fh   FaultHarness
	opts FaultOptions
}

func newFaultEnv(t *testing.T, caps Capabilities, opts FaultOptions) *faultEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	fh, err := caps.Faults(ctx, t, opts)
	if err != nil {
		t.Fatalf("making the fault harness: %v", err)
	}
	if fh == nil {
		t.Fatal("the FaultHarnessMaker returned a nil FaultHarness and no error")
	}
	t.Cleanup(fh.Close)
	return &faultEnv{env: &env{t: t, h: fh, caps: caps}, fh: fh, opts: opts}
}

// observer makes a handle that reaches the registry directly, closed when
// the subtest ends.
func (f *faultEnv) observer() discovery.Backend {
	f.t.Helper()
	return f.open("MakeObserver", " of the observer", f.fh.MakeObserver)
}

// watch starts a watcher that lives as long as the subtest (env.watch's
// ends after Timeout, shorter than some scenarios).
func (f *faultEnv) watch(b discovery.Backend, service string) discovery.Watcher {
	f.t.Helper()
	return f.watchWith(f.t.Context(), b, service)
}

func (f *faultEnv) stop() {
	f.t.Helper()
	if err := f.fh.Stop(f.ctx()); err != nil {
		f.t.Fatalf("stopping the registry: %v", err)
	}
}

func (f *faultEnv) start() {
	f.t.Helper()
	if err := f.fh.Start(f.ctx()); err != nil {
		f.t.Fatalf("starting the registry again: %v", err)
	}
}

// waitNotRegistered polls r.Status(key) until its state is not Registered, and
// returns it.
func (f *faultEnv) waitNotRegistered(r discovery.StatusReporter, key discovery.Key, d time.Duration) discovery.Status {
	f.t.Helper()
	var st discovery.Status
	f.eventuallyWithin(d, fmt.Sprintf("Status(%q, %q) leaves registered", key.Service, key.ID), func(context.Context) (bool, string) {
		var err error
		st, err = r.Status(key.Service, key.ID)
		if err != nil {
			return false, "error: " + err.Error()
		}
		return st.State != discovery.StateRegistered, st.String()
	})
	return st
}

// stateLog records the states a backend reports for one key, from a
// status subscription started before the fault.
type stateLog struct {
	sub  discovery.StatusSubscription
	done chan struct{}
	mu   sync.Mutex
	got  []discovery.Status
}

// recordStates records the states b reports for key from now on; it
// returns nil unless Capabilities.Status.
func (f *faultEnv) recordStates(b discovery.Backend, key discovery.Key) *stateLog {
	if !f.caps.Status {
		return nil
	}
	l := &stateLog{sub: f.reporter(b).SubscribeStatus(), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			st, err := l.sub.Next(context.Background())
			if err != nil {
				return
			}
			if st.Instance.Key() == key {
				l.mu.Lock()
				l.got = append(l.got, st)
				l.mu.Unlock()
			}
		}
	}()
	f.t.Cleanup(l.stop)
	return l
}

func (l *stateLog) statuses() []discovery.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

func (l *stateLog) states() []discovery.State {
	var states []discovery.State
	for _, st := range l.statuses() {
		states = append(states, st.State)
	}
	return states
}

func (l *stateLog) stop() {
	l.sub.Stop()
	<-l.done
}

// keyPoller resolves a service through an observer every 20 ms and counts
// the answers that lacked the instance.
type keyPoller struct {
	stop, done chan struct{}
	mu         sync.Mutex
	reads      int       // successful Resolves
	absent     []string  // when a read lacked the instance
	lastSeen   time.Time // start of the latest read that found it
}

func (f *faultEnv) pollInstance(obs discovery.Backend, in discovery.Instance) *keyPoller {
	p := &keyPoller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			got, err := obs.Resolve(ctx, in.Service)
			cancel()
			if err != nil {
				continue // the registry is stopped: no answer is no absence
			}
			p.mu.Lock()
			p.reads++
			if slices.ContainsFunc(got, in.Equal) {
				p.lastSeen = start
			} else {
				p.absent = append(p.absent, fmt.Sprintf("%s: %s", start.Format("15:04:05.000"), fmtSet(got)))
			}
			p.mu.Unlock()
		}
	}()
	f.t.Cleanup(p.halt)
	return p
}

func (p *keyPoller) seenAfter(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSeen.After(t)
}

func (p *keyPoller) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// registeredOne registers p-1 on a new backend, waits until an observer
// resolves it, and returns both handles, p-1 and the log of p-1's states
// from then on (nil without Capabilities.Status).
func (f *faultEnv) registeredOne() (b, obs discovery.Backend, p1 discovery.Instance, log *stateLog) {
	f.t.Helper()
	b, obs = f.backend(), f.observer()
	p1 = inst(payments, "p-1", "10.0.0.1:80")
	f.register(b, p1)
	f.waitResolve(obs, payments, set(p1))
	return b, obs, p1, f.recordStates(b, p1.Key())
}

// A registry that stops and starts again within the TTL never loses the
// instance: every read that gets an answer finds it, up to a read made
// after the TTL would have ended, and its registrar never reports it lost.
func testFaultRestartWithinTTL(t *testing.T, f *faultEnv) {
	b, obs, p1, log := f.registeredOne()
	p := f.pollInstance(obs, p1)

	stopped := time.Now()
	f.stop()
	f.start()
	t.Logf("registry stopped and started again in %v (TTL %v)", time.Since(stopped).Round(time.Millisecond), f.opts.TTL)
	// A key nobody renewed through the restart would be gone by then.
	expired := time.Now().Add(f.opts.TTL + 500*time.Millisecond)
	f.eventuallyWithin(f.opts.TTL+Timeout, "a read after the TTL finds the instance", func(context.Context) (bool, string) {
		return p.seenAfter(expired), "no such read yet"
	})
	p.halt()
	if len(p.absent) != 0 {
		t.Errorf("the instance was absent in %d of %d reads, at %s; want present in every read", len(p.absent), p.reads, strings.Join(p.absent, ", "))
	}
	if log != nil {
		f.waitState(f.reporter(b), p1.Key(), discovery.StateRegistered)
		if states := log.states(); slices.Contains(states, discovery.StateLost) {
			t.Errorf("states %v; want no %v: the instance never left the registry", states, discovery.StateLost)
		}
	}
}

// A registry down for longer than the TTL: the registrar says it is not
// registered while it cannot be, and once the registry is back the
// instance is back, exactly, and the registrar says registered again.
func testFaultDownLongerThanTTL(t *testing.T, f *faultEnv) {
	b, obs, p1, log := f.registeredOne()

	stopped := time.Now()
	f.stop()
	if f.caps.Status {
		// The truth within a TTL: the instance is no longer known to be
		// in the registry.
		st := f.waitNotRegistered(f.reporter(b), p1.Key(), f.opts.TTL+Timeout)
		if st.Err == nil {
			t.Errorf("status during the outage = %v; want a cause", st)
		}
	}
	// Down longer than the TTL (plus the registry's expiry tick).
	f.eventuallyWithin(f.opts.TTL+Timeout, "the outage outlasts the TTL", func(context.Context) (bool, string) {
		return time.Since(stopped) > f.opts.TTL+time.Second, "not yet"
	})
	if f.caps.Status {
		if st, err := f.reporter(b).Status(p1.Service, p1.ID); err != nil || st.State == discovery.StateRegistered {
			t.Errorf("status a TTL into the outage = %v, %v; want it not registered", st, err)
		}
	}
	f.start()
	back := time.Now()
	f.waitResolve(obs, payments, set(p1))
	t.Logf("instance back %v after the registry", time.Since(back).Round(time.Millisecond))
	if f.caps.Status {
		f.waitState(f.reporter(b), p1.Key(), discovery.StateRegistered)
		// The subscription starts with the current state, registered.
		states := log.states()
		i := slices.IndexFunc(states, func(s discovery.State) bool { return s != discovery.StateRegistered })
		if i < 0 || states[len(states)-1] != discovery.StateRegistered {
			t.Errorf("states through the outage = %v; want a state other than registered, then registered last", states)
		}
	}
	f.waitResolve(b, payments, set(p1))
}

// An instance deleted from the registry by someone else is written back
// by its registrar, exactly, and its status ends registered.
func testFaultExternalDelete(t *testing.T, f *faultEnv) {
	b, obs := f.backend(), f.observer()
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	f.register(b, p1, p2)
	f.waitResolve(obs, payments, set(p1, p2))
	log := f.recordStates(b, p1.Key())

	// Remove fails unless the registry held p1, so what Resolve finds
	// afterwards was written again.
	removed := time.Now()
	if err := f.fh.Remove(f.ctx(), p1.Key()); err != nil {
		t.Fatalf("Remove(%s): %v", p1.Key(), err)
	}
	f.waitResolve(obs, payments, set(p1, p2))
	t.Logf("restored %v after the delete", time.Since(removed).Round(time.Millisecond))
	if f.caps.Status {
		f.waitState(f.reporter(b), p1.Key(), discovery.StateRegistered)
		// A subscriber may miss a state that lasted a round trip; a
		// lost state it does see must give the cause.
		for _, st := range log.statuses() {
			if st.State == discovery.StateLost && !errors.Is(st.Err, discovery.ErrRemoved) {
				t.Errorf("lost with cause %v; want it to wrap discovery.ErrRemoved", st.Err)
			}
		}
	}
	f.waitResolve(obs, payments, set(p1, p2))
}

// Two registrars of one instance (same service and ID, different
// addresses) settle: the later writer owns it, and for several renewal
// rounds nobody writes the other's value again; when the later one
// deregisters, the earlier one takes it back.
func testFaultTwoBackendsDoNotFlap(t *testing.T, f *faultEnv) {
	a, b, obs := f.backend(), f.backend(), f.observer()
	pa := inst(payments, "p-1", "10.0.0.1:80")
	pb := inst(payments, "p-1", "10.0.0.2:80")
	w := f.watch(obs, payments)
	f.nextUntil(w, set())
	f.register(a, pa)
	f.nextUntil(w, set(pa))
	f.register(b, pb)
	f.nextUntil(w, set(pb))
	if f.caps.Status {
		f.waitState(f.reporter(a), pa.Key(), discovery.StateConflict)
	}
	log := f.recordStates(a, pa.Key())
	// Several renewal rounds (a TTL holds three): the set stays the later
	// writer's.
	ctx, cancel := context.WithTimeout(context.Background(), 2*f.opts.TTL)
	defer cancel()
	for {
		got, err := w.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("Watcher.Next while both backends hold p-1: %v", err)
		}
		t.Errorf("the set changed to %s while both backends held p-1; want it to stay %s", fmtSet(got), fmtSet(set(pb)))
	}
	if log != nil {
		for _, st := range log.statuses() {
			if st.State != discovery.StateConflict {
				t.Errorf("earlier writer's states while the later one renewed = %v; want conflict only", log.states())
				break
			}
		}
	}
	f.deregister(b, pb)
	f.nextUntil(w, set(pa))
	if f.caps.Status {
		f.waitState(f.reporter(a), pa.Key(), discovery.StateRegistered)
	}
}

// A partition longer than the TTL (the link silent, nothing closed): the
// registry expires the instance, its registrar says it is not registered,
// and once the partition heals the instance is back and registered.
func testFaultBlackhole(t *testing.T, f *faultEnv) {
	b, obs := f.backend(), f.observer()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	f.register(b, p1)
	w := f.watch(obs, payments)
	f.nextUntil(w, set(p1))

	f.fh.Cut(CutBlackhole)
	f.nextUntil(w, set())
	if f.caps.Status {
		f.waitNotRegistered(f.reporter(b), p1.Key(), Timeout)
	}
	f.fh.Heal()
	healed := time.Now()
	f.nextUntil(w, set(p1))
	t.Logf("instance back %v after the partition healed", time.Since(healed).Round(time.Millisecond))
	if f.caps.Status {
		f.waitState(f.reporter(b), p1.Key(), discovery.StateRegistered)
	}
}

// A watcher cut off from the registry says so (an error wrapping
// ErrUnavailable) and, once the link is back, returns exactly the set the
// registry holds then, changes made meanwhile included.
func testFaultWatchOutage(t *testing.T, f *faultEnv) {
	c, obs := f.backend(), f.observer()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	f.register(obs, p1)
	w := f.watch(c, payments)
	f.nextUntil(w, set(p1))

	f.fh.Cut(CutReject)
	ctx := f.ctx()
	if got, err := w.Next(ctx); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("Next once cut off = %s, %v; want an error wrapping discovery.ErrUnavailable", fmtSet(got), err)
	}
	// Changes the cut-off watcher cannot see.
	f.deregister(obs, p1)
	f.register(obs, p2)
	f.fh.Heal()
	got, err := w.Next(ctx)
	if err != nil || !discovery.EqualSets(got, set(p2)) {
		t.Fatalf("Next once the link is back = %s, %v; want exactly %s", fmtSet(got), err, fmtSet(set(p2)))
	}
}

// Close against a registry it cannot reach returns within its bound, with
// an error wrapping ErrUnavailable that names every instance it could not
// remove; those instances leave the registry when their TTL ends.
func testFaultCloseInAnOutage(t *testing.T, f *faultEnv) {
	b, obs := f.backend(), f.observer()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	f.register(b, p1, p2)
	f.waitResolve(obs, payments, set(p1, p2))

	f.fh.Cut(CutReject)
	res := make(chan error, 1)
	go func() { res <- b.Close() }()
	err := f.waitErr("Close with the registry cut off", res)
	if err == nil {
		t.Fatal("Close with the registry cut off = nil; want an error naming the instances it could not remove")
	}
	if !errors.Is(err, discovery.ErrUnavailable) {
		t.Errorf("Close with the registry cut off = %v; want an error wrapping discovery.ErrUnavailable", err)
	}
	for _, in := range []discovery.Instance{p1, p2} {
		if !strings.Contains(err.Error(), in.ID) {
			t.Errorf("Close error %q does not name %s", err, fmtInstance(in))
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	f.fh.Heal()
	// Nobody renews them: they expire.
	f.waitResolve(obs, payments, set())
}

// Deregister with the registry down waits for it, within its context:
// when the context ends first it returns an error wrapping ErrUnavailable
// (and the context's), and the instance still leaves once the registry is
// back; given time, it returns nil once the registry no longer holds the
// instance.
func testFaultDeregisterInAnOutage(t *testing.T, f *faultEnv) {
	b, obs := f.backend(), f.observer()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	f.register(b, p1, p2)
	f.waitResolve(obs, payments, set(p1, p2))

	f.stop()
	patient := make(chan error, 1)
	go func() { patient <- b.Deregister(f.ctx(), p2) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := b.Deregister(ctx, p1)
	if !errors.Is(err, discovery.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deregister with the registry down, its context ending = %v; want an error wrapping discovery.ErrUnavailable and context.DeadlineExceeded", err)
	}
	// The patient Deregister has waited as long through the outage.
	select {
	case err := <-patient:
		t.Fatalf("Deregister with the registry down returned %v before the registry was back; want it to wait", err)
	default:
	}
	f.start()
	if err := f.waitErr("Deregister once the registry is back", patient); err != nil {
		t.Errorf("Deregister once the registry is back = %v; want nil", err)
	}
	// It returned once the registry no longer held p2: the observer's
	// first answer (its own connection may still be coming back) lacks
	// it. p1 leaves too.
	var first []discovery.Instance
	f.eventually("the observer's first Resolve after the restart", func(ctx context.Context) (bool, string) {
		got, err := obs.Resolve(ctx, payments)
		if err != nil {
			if !errors.Is(err, discovery.ErrUnavailable) {
				t.Fatalf("Resolve(%q): %v", payments, err)
			}
			return false, err.Error()
		}
		first = got
		return true, ""
	})
	if slices.ContainsFunc(first, p2.Equal) {
		t.Errorf("Resolve right after Deregister returned = %s; want no %s", fmtSet(first), fmtInstance(p2))
	}
	f.waitResolve(obs, payments, set())
	if f.caps.Status {
		for _, in := range []discovery.Instance{p1, p2} {
			if st, err := f.reporter(b).Status(in.Service, in.ID); err == nil && st.State == discovery.StateRegistered {
				t.Errorf("Status(%s) after Deregister = %v; want it not registered", in.ID, st)
			}
		}
	}
}
