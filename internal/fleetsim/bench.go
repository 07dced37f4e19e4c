package fleetsim

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
)

// Options are the settings of a simulation: the flags of roster bench,
// whose names the errors of Validate give.
type Options struct {
	// Backend is the registry's kind: backends.Etcd or backends.NATS.
	Backend string
	// Etcd configures the fleet's etcd backends (Backend etcd). With
	// Endpoints empty the simulator starts an embedded 3-member cluster.
	Etcd etcd.Config
	// NATS configures the fleet's NATS backends (Backend nats). The
	// simulator starts an embedded 3-node cluster; Endpoints must be
	// empty.
	NATS nats.Config

	Processes, Instances, Watchers, ServiceSize, Concurrency int
	TTL, RecoveryTimeout                                     time.Duration
	// Cut cuts the network between the fleet and the registry for this
	// long, through a fault proxy in front of each endpoint.
	Cut time.Duration
	// Restart stops every member of the embedded cluster for this long.
	Restart time.Duration
	// RestartMembers stops one member at a time for this long, starting
	// it again and waiting for the cluster to count it before the next.
	RestartMembers time.Duration
	// RestartLeader stops the leader alone for this long (etcd: the raft
	// leader; NATS: the leader of the bucket's stream).
	RestartLeader time.Duration
	CPUBurn       int           // spinning goroutines
	Timeline      string        // file for the per-process timelines
	LieTolerance  time.Duration // scheduling slack of the status check
	// ElectionTimeout is the embedded etcd cluster's (heartbeat a tenth).
	ElectionTimeout time.Duration
	// Progress receives progress lines; nil discards them.
	Progress func(format string, args ...any)
	// ServerLog, when set, receives the embedded servers' logs.
	ServerLog io.Writer
}

// Report is what a simulation measured: roster bench prints it as a table
// or as JSON.
type Report struct {
	Backend       string `json:"backend"` // "etcd" or "nats"
	Mode          string `json:"mode"`    // "embedded" or "endpoints"
	Prefix        string `json:"prefix"`  // etcd's prefix, or NATS's bucket`
	Processes     int    `json:"processes"`
	Instances     int    `json:"instances_per_process"`
	Watchers      int    `json:"watchers"`
	ServiceSize   int    `json:"service_size"`
	Registrations int    `json:"registrations"`

	RegistrationsPerSecond float64   `json:"registrations_per_second"`
	FirstRegistration      Durations `json:"first_registration"`
	RequestsPerReg         float64   `json:"requests_per_registration"`
	// EventsPerReg counts the watch events the fleet received (etcd
	// only: NATS's are not told from other messages).
	EventsPerReg *float64 `json:"watch_events_per_registration,omitempty"`
	// ServerEventsPerReg is etcd's own count (etcd_debugging_mvcc_events_total),
	// embedded mode only.
	ServerEventsPerReg *float64 `json:"server_events_per_registration,omitempty"`
	// ServerRequestsPerReg is etcd's own count of requests received
	// (grpc_server_msg_received_total), embedded mode only.
	ServerRequestsPerReg *float64 `json:"server_requests_per_registration,omitempty"`

	Fault *FaultReport `json:"fault,omitempty"`

	// HeapBytesPerProcess and GoroutinesPerProcess are the simulated
	// processes' own, after registration and watch: the live heap and the
	// goroutines of roster and its etcd client, not the embedded servers'
	// side of their connections, nor the bench's observers.
	HeapBytesPerProcess  float64 `json:"heap_bytes_per_process"`
	GoroutinesPerProcess float64 `json:"goroutines_per_process"`
	// HeapSites are the functions that allocated most of that heap, per
	// process.
	HeapSites []HeapShare `json:"heap_sites_per_process"`
	// ProcessHeapBytesPerProcess is the growth of the whole OS process's
	// live heap, divided by the processes: in embedded mode it includes
	// the servers' side of each connection.
	ProcessHeapBytesPerProcess float64 `json:"process_heap_bytes_per_process"`
	// ProcessGoroutinesPerProcess is the same for the goroutines.
	ProcessGoroutinesPerProcess float64 `json:"process_goroutines_per_process"`

	Missing int `json:"missing"` // registrations absent from the registry at the end
	// MissingKeys names the first of them (at most 10), to look up in
	// the timeline.
	MissingKeys []string `json:"missing_keys,omitempty"`
	// MissingUnknown is why the registry could not be read at the end
	// (Missing is then 0 and says nothing).
	MissingUnknown string `json:"missing_unknown,omitempty"`
}

// FaultReport describes a cut or restart and the recovery after it.
type FaultReport struct {
	// Kind is "cut", "restart" (the whole cluster), "restart-members"
	// (one member at a time) or "restart-leader".
	Kind     string `json:"kind"`
	Duration string `json:"duration"`
	// Stopped names the members stopped, in order (restarts).
	Stopped               []int   `json:"members_stopped,omitempty"`
	DialsPerProcessPerSec float64 `json:"dials_per_process_per_second"`
	// UsableAfterHeal is how long after the heal (the proxies healed, or
	// the members were started again) the registry was usable, the
	// moment from which the recovery is timed: after a restart, when a
	// quorum of members first named a leader; after a cut, the heal.
	UsableAfterHeal         float64 `json:"usable_after_heal_ms"`
	ProcessesRegisteredBack int     `json:"processes_registered_again"`
	// Stragglers are the processes not registered again when the window
	// ended.
	Stragglers int `json:"stragglers"`
	// Left counts the processes that left registered during the fault
	// (every one, after a fault longer than the TTL), and Unregistered
	// the time each of them spent not registered, from the fault's start
	// to the window's end: what a member's restart costs a fleet that
	// can fail over.
	Left         int       `json:"processes_left_registered"`
	Unregistered Durations `json:"time_not_registered"`
	// LeaderChanges counts the changes of the cluster's leader the bench
	// saw (polled in process) from the fault's start to the window's end
	// (embedded mode).
	LeaderChanges int `json:"leader_changes"`
	// FellBack counts the processes that were registered again, then
	// left registered again before the window ended.
	FellBack      int `json:"processes_fell_back"`
	WatchersExact int `json:"watchers_exact"`
	// Reregistered is the time from the registry being usable until each
	// process had all its instances registered again, over every
	// process: a straggler counts as the whole window (a lower bound).
	Reregistered Durations `json:"time_to_registered"`
	// ReregisteredFromHeal is the same from the heal.
	ReregisteredFromHeal Durations `json:"time_to_registered_from_heal"`
	WatcherExact         Durations `json:"time_to_watcher_exact"`
	// Window is the recovery window: from the heal until every process
	// was back and every watcher exact, or until --recovery-timeout.
	Window float64 `json:"window_ms"`
	// RecoveryRequests are the requests each process sent from the heal
	// until it was registered again itself (a straggler: until the window
	// ended), averaged over the processes, by gRPC method, and the most
	// any one process sent.
	RecoveryRequests         float64            `json:"recovery_requests_per_process"`
	RecoveryRequestsByMethod map[string]float64 `json:"recovery_requests_per_process_by_method"`
	MaxRecoveryRequests      int64              `json:"recovery_requests_max"`
	// WindowRequestsPerProcess counts every request of the window (the
	// keep-alives of processes already back, the watchers' too), per
	// process.
	WindowRequestsPerProcess float64 `json:"window_requests_per_process"`
	RangeReads               int64   `json:"recovery_range_reads"`
	// WindowRequestsByMethod splits WindowRequestsPerProcess by gRPC
	// method.
	WindowRequestsByMethod map[string]float64 `json:"window_requests_per_process_by_method"`
	// ServerCounters are etcd's own counters (embedded mode), summed over
	// the members: their growth from the fault's start to the window's
	// end.
	ServerCounters map[string]float64 `json:"server_counters,omitempty"`
	// Lies are the processes that said registered while the registry had
	// been unreachable for longer than the TTL (with --lie-tolerance).
	// Checked after a cut or a whole-cluster restart only: a member's
	// restart leaves the registry reachable.
	Lies []Lie `json:"lies"`
}

// Durations is a distribution summary.
type Durations struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	// NotBack of the Count samples are stragglers, counted as the whole
	// window: a percentile that falls on one is a lower bound.
	NotBack int `json:"not_back,omitempty"`
}

// summarize returns the p50, p99 and max of ds (nearest-rank percentiles).
func summarize(ds []time.Duration) Durations {
	if len(ds) == 0 {
		return Durations{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Durations{Count: len(s), P50: ms(rank(0.50)), P99: ms(rank(0.99)), Max: ms(s[len(s)-1])}
}

// ErrInvalidOptions is wrapped by the error of Validate and Run given
// invalid Options; the message names the flag and the reason.
var ErrInvalidOptions = errors.New("fleetsim: invalid options")

// optionError is an invalid option: its message is the command line's
// (it names the flag), and it wraps ErrInvalidOptions.
type optionError struct{ msg string }

func (e *optionError) Error() string        { return e.msg }
func (e *optionError) Is(target error) bool { return target == ErrInvalidOptions }

func invalidf(format string, args ...any) error {
	return &optionError{fmt.Sprintf(format, args...)}
}

// embedded reports whether the simulation runs against an embedded
// cluster (no endpoints given).
func (o Options) embedded() bool {
	return o.Backend == backends.NATS || len(o.Etcd.Endpoints) == 0
}

// faults returns the faults o asks for and how many.
func (o Options) faults() (kind string, d time.Duration, n int) {
	for _, f := range []struct {
		kind string
		d    time.Duration
	}{{"cut", o.Cut}, {"restart", o.Restart}, {"restart-members", o.RestartMembers}, {"restart-leader", o.RestartLeader}} {
		if f.d != 0 {
			n++
			kind, d = f.kind, f.d
		}
	}
	return kind, d, n
}

// Validate checks o; an invalid option gives an error wrapping
// ErrInvalidOptions that names its flag.
func (o Options) Validate() error {
	_, _, nfaults := o.faults()
	switch {
	case o.Backend != backends.Etcd && o.Backend != backends.NATS:
		return invalidf("bench drives the etcd and nats backends; got %q", o.Backend)
	case o.Backend == backends.NATS && len(o.NATS.Endpoints) > 0:
		return invalidf("bench --backend nats runs against its embedded 3-node cluster only; --endpoints is not supported")
	case o.Processes < 1:
		return invalidf("invalid --processes %d: want at least 1", o.Processes)
	case o.Instances < 1:
		return invalidf("invalid --instances %d: want at least 1", o.Instances)
	case o.Watchers < 0 || o.Watchers > o.Processes:
		return invalidf("invalid --watchers %d: want 0..%d (--processes)", o.Watchers, o.Processes)
	case o.ServiceSize < 0 || o.ServiceSize > o.Processes*o.Instances:
		return invalidf("invalid --service-size %d: want 0..%d (--processes x --instances)", o.ServiceSize, o.Processes*o.Instances)
	case o.Concurrency < 1:
		return invalidf("invalid --concurrency %d: want at least 1", o.Concurrency)
	case o.Cut < 0 || o.Restart < 0 || o.RestartMembers < 0 || o.RestartLeader < 0:
		return invalidf("invalid --cut or --restart: want a positive duration")
	case o.Cut > 0 && o.Restart > 0:
		return invalidf("--cut and --restart cannot be combined")
	case nfaults > 1:
		return invalidf("--cut, --restart, --restart-members and --restart-leader cannot be combined")
	case (o.Restart > 0 || o.RestartMembers > 0 || o.RestartLeader > 0) && !o.embedded():
		return invalidf("--restart needs the embedded cluster; use --cut with --endpoints")
	case o.Backend == backends.NATS && (o.TTL < nats.MinTTL || o.TTL%time.Second != 0):
		return invalidf("invalid --ttl %v: NATS counts TTLs in whole seconds, at least %v", o.TTL, nats.MinTTL)
	case o.CPUBurn < 0:
		return invalidf("invalid --cpu-burn %d: want 0 or more", o.CPUBurn)
	case o.ElectionTimeout < 10*time.Millisecond && o.Backend == backends.Etcd:
		return invalidf("invalid --election-timeout %v: want at least 10ms", o.ElectionTimeout)
	case o.LieTolerance < 0:
		return invalidf("invalid --lie-tolerance %v: want 0 or more", o.LieTolerance)
	case o.RecoveryTimeout <= 0:
		return invalidf("invalid --recovery-timeout %v: want a positive duration", o.RecoveryTimeout)
	}
	return nil
}

// Run runs the phases of a simulation: start the registry (or connect
// to it), create the fleet, register, watch, measure, fault and recover
// if asked, check what the registry holds, close the fleet. It returns
// the report, or an error if the simulation could not run. A report
// whose Failures are not empty is still a report.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if o.CPUBurn > 0 {
		progress("keeping %d goroutines spinning (--cpu-burn)", o.CPUBurn)
		burn := startCPUBurn(o.CPUBurn)
		defer burn.Close()
	}
	var reg registry
	switch o.Backend {
	case backends.NATS:
		reg, err = startNATS(o, progress)
	default:
		reg, err = startEtcd(o, progress)
	}
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, reg.close()) }()

	rep := &Report{
		Backend: o.Backend, Mode: "endpoints", Prefix: reg.prefix(), Processes: o.Processes, Instances: o.Instances,
		Watchers: o.Watchers, ServiceSize: o.ServiceSize, Registrations: o.Processes * o.Instances,
	}
	if o.embedded() {
		rep.Mode = "embedded"
	}

	// Sample the heap finely while the processes are created, and no
	// longer once measured: sampling costs CPU the recovery needs.
	profileRate := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = profileRate }()
	runtime.MemProfileRate = benchMemProfileRate
	base := memSnapshot()
	progress("creating %d processes", o.Processes)
	fl, err := newFleet(reg, o.Processes, o.Instances, o.ServiceSize, o.Concurrency)
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			if cerr := fl.Close(); cerr != nil {
				// One line, not one per process: the run's own error
				// is what matters.
				progress("closing the fleet: %s", firstOf(cerr))
			}
		}
	}()

	// Registration.
	reqs0, ev0 := fl.traffic.requests(), fl.traffic.events.Load()
	srv0 := reg.registrationCounters()
	progress("registering %d instances", rep.Registrations)
	var last time.Time
	var lastMu sync.Mutex
	took, err := fl.register(ctx, o.Concurrency, func(done int) {
		lastMu.Lock()
		defer lastMu.Unlock()
		if done == o.Processes || time.Since(last) >= time.Second {
			last = time.Now()
			progress("registered %d/%d processes", done, o.Processes)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	regs := float64(rep.Registrations)
	rep.RegistrationsPerSecond = regs / took.Seconds()
	var firsts []time.Duration
	for _, p := range fl.procs {
		firsts = append(firsts, p.firstReg)
	}
	rep.FirstRegistration = summarize(firsts)
	rep.RequestsPerReg = float64(fl.traffic.requests()-reqs0) / regs
	if reg.countsEvents() {
		v := float64(fl.traffic.events.Load()-ev0) / regs
		rep.EventsPerReg = &v
	}
	if srv0 != nil {
		srv := reg.registrationCounters()
		v := (srv.events - srv0.events) / regs
		rep.ServerEventsPerReg = &v
		r := (srv.requests - srv0.requests) / regs
		rep.ServerRequestsPerReg = &r
	}

	if o.Watchers > 0 {
		progress("starting %d watchers of %d instances", o.Watchers, o.ServiceSize)
		wctx, cancel := context.WithTimeout(ctx, o.RecoveryTimeout)
		err := fl.watch(wctx, o.Watchers)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("watchers did not get the exact set: %w", err)
		}
	}
	mem := memSnapshot()
	runtime.MemProfileRate = profileRate
	perProc := func(v float64) float64 { return v / float64(o.Processes) }
	rep.ProcessHeapBytesPerProcess = perProc(float64(mem.heap) - float64(base.heap))
	rep.HeapBytesPerProcess = perProc(mem.clientHeap - base.clientHeap)
	rep.GoroutinesPerProcess = perProc(float64(mem.clientGoroutines - base.clientGoroutines))
	rep.ProcessGoroutinesPerProcess = perProc(float64(mem.goroutines - base.goroutines))
	before := make(map[string]float64, len(base.sites))
	for _, s := range base.sites {
		before[s.Site] = s.Bytes
	}
	for _, s := range mem.sites {
		if b := perProc(s.Bytes - before[s.Site]); b >= 512 {
			rep.HeapSites = append(rep.HeapSites, HeapShare{Site: s.Site, Bytes: b})
		}
	}
	slices.SortFunc(rep.HeapSites, func(a, b HeapShare) int { return cmp.Compare(b.Bytes, a.Bytes) })
	if len(rep.HeapSites) > 8 {
		rep.HeapSites = rep.HeapSites[:8]
	}

	if _, _, n := o.faults(); n > 0 {
		fr, err := fault(ctx, fl, o, reg, progress)
		if err != nil {
			return nil, err
		}
		rep.Fault = fr
	} else if o.Timeline != "" {
		if err := fl.writeTimeline(o.Timeline, o.TTL, nil, nil, nil); err != nil {
			return nil, err
		}
	}

	// Verification, with a plain backend straight to the registry.
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	missing, err := missingRegistrations(vctx, reg, fl.registrations())
	if err != nil {
		// The figures stand; what the registry holds is not known.
		progress("checking the registrations: %v", err)
		rep.MissingUnknown = err.Error()
	}
	rep.Missing = len(missing)
	for _, k := range missing[:min(10, len(missing))] {
		rep.MissingKeys = append(rep.MissingKeys, k.String())
	}
	progress("closing the fleet")
	closed = true
	if err := fl.Close(); err != nil {
		// Not the figures' concern: a lease not revoked expires with its
		// TTL. On a loaded cluster revokes time out.
		progress("closing the fleet: %s", firstOf(err))
	}
	return rep, nil
}

// firstOf summarizes an error joined from one per process (errors.Join):
// their number and the first.
func firstOf(err error) string {
	lines := strings.Split(err.Error(), "\n")
	return fmt.Sprintf("%d errors, the first: %s", len(lines), lines[0])
}

// Failures returns what makes the simulation a failure: registrations
// missing from the registry at the end, processes not registered again
// after the fault, statuses that lied. recoveryTimeout and ttl are the
// run's, for the messages.
func (rep *Report) Failures(recoveryTimeout, ttl time.Duration) []error {
	var fails []error
	if rep.MissingUnknown != "" {
		fails = append(fails, fmt.Errorf("could not check the registrations at the end: %s", rep.MissingUnknown))
	}
	if rep.Missing > 0 {
		fails = append(fails, fmt.Errorf("%d of %d registrations missing from %s at the end", rep.Missing, rep.Registrations, rep.Backend))
	}
	if f := rep.Fault; f != nil {
		if f.Stragglers > 0 {
			fails = append(fails, fmt.Errorf("%d of %d processes not registered again within %v", f.Stragglers, rep.Processes, recoveryTimeout))
		}
		if len(f.Lies) > 0 {
			l := f.Lies[0]
			fails = append(fails, fmt.Errorf("%d statuses lied: process %d said registered (since %s) when the registry had been unreachable for %s (TTL %v)",
				len(f.Lies), l.Process, l.Since.Format("15:04:05.000"), l.Unconfirmed, ttl))
		}
	}
	return fails
}

// readAttempt bounds each read of the end check: a read that gets no
// answer is made again, until the check's own deadline. On NATS, right
// after a whole-cluster restart the fleet can be back (the bucket's stream
// has a leader) before JetStream's meta leader is elected, and a read
// started then (a consumer to create) was seen to go unanswered for 30 s
// and more, while a new one succeeds (TestNATSRestart).
const readAttempt = 5 * time.Second

// missingRegistrations counts the registrations that the registry does
// not hold, reading each of their services once through reg's reader
// (again after readAttempt without an answer, until ctx ends).
func missingRegistrations(ctx context.Context, reg registry, regs []discovery.Key) ([]discovery.Key, error) {
	r, release, err := reg.reader()
	if err != nil {
		return nil, err
	}
	defer release()
	resolve := func(service string) ([]discovery.Instance, error) {
		for {
			actx, cancel := context.WithTimeout(ctx, readAttempt)
			set, err := r.Resolve(actx, service)
			unanswered := actx.Err() != nil
			cancel()
			if err == nil || ctx.Err() != nil || !unanswered {
				return set, err
			}
		}
	}
	have := make(map[discovery.Key]bool)
	read := make(map[string]bool)
	var missing []discovery.Key
	for _, k := range regs {
		if !read[k.Service] {
			read[k.Service] = true
			set, err := resolve(k.Service)
			if err != nil {
				return nil, fmt.Errorf("read service %s under %s: %w", k.Service, reg.prefix(), err)
			}
			for _, in := range set {
				have[in.Key()] = true
			}
		}
		if !have[k] {
			missing = append(missing, k)
		}
	}
	return missing, nil
}

// fault cuts the fleet off (or restarts the cluster, its members one at
// a time, or its leader), heals, and measures the recovery.
func fault(ctx context.Context, fl *fleet, o Options, reg registry, progress func(string, ...any)) (*FaultReport, error) {
	kind, d, _ := o.faults()
	fr := &FaultReport{Kind: kind, Duration: d.String()}
	counters0 := reg.serverCounters()
	var leaders *leaderLog
	if o.embedded() {
		leaders = startLeaderLog(reg.leader)
		defer leaders.stop()
	}
	fl.markCut()
	dials0 := fl.traffic.dials.Load()
	var ft faultTimes
	ft.Start = time.Now()
	start := ft.Start
	// A member's restart leaves the registry usable: the recovery's
	// requests are counted from the fault's start.
	stepwise := kind == "restart-members" || kind == "restart-leader"
	var startReqs []map[string]int64
	if stepwise {
		startReqs = make([]map[string]int64, len(fl.procs))
		for i, p := range fl.procs {
			startReqs[i] = p.traffic.methods()
		}
	}
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	members := reg.members()
	switch kind {
	case "cut":
		progress("cutting the network for %v", d)
		if err := reg.cut(); err != nil {
			return nil, err
		}
		ft.Unreachable = time.Now()
	case "restart":
		progress("stopping the cluster for %v", d)
		for i, m := range members {
			if err := m.stop(); err != nil {
				return nil, fmt.Errorf("stop member %d: %w", i, err)
			}
			fr.Stopped = append(fr.Stopped, i)
		}
		ft.Unreachable = time.Now()
	default:
		var order []int
		if kind == "restart-leader" {
			i := reg.leader()
			if i < 0 {
				wctx, cancel := context.WithTimeout(ctx, o.RecoveryTimeout)
				err := reg.waitHealthy(wctx)
				cancel()
				if i = reg.leader(); err != nil || i < 0 {
					return nil, fmt.Errorf("no leader to restart: %w", err)
				}
			}
			order = []int{i}
		} else {
			for i := range members {
				order = append(order, i)
			}
		}
		for n, i := range order {
			progress("stopping member %d for %v", i, d)
			if err := members[i].stop(); err != nil {
				return nil, fmt.Errorf("stop member %d: %w", i, err)
			}
			fr.Stopped = append(fr.Stopped, i)
			if err := wait(d); err != nil {
				return nil, err
			}
			progress("starting member %d again", i)
			if err := members[i].restart(); err != nil {
				return nil, fmt.Errorf("restart member %d: %w", i, err)
			}
			if n == len(order)-1 {
				break
			}
			wctx, cancel := context.WithTimeout(ctx, o.RecoveryTimeout)
			err := reg.waitHealthy(wctx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("member %d did not rejoin: %w", i, err)
			}
		}
	}
	if !stepwise {
		if err := wait(d); err != nil {
			return nil, err
		}
	}
	fr.DialsPerProcessPerSec = float64(fl.traffic.dials.Load()-dials0) / float64(len(fl.procs)) / time.Since(start).Seconds()
	reqs0, ranges0, methods0 := fl.traffic.requests(), fl.traffic.ranges.Load(), fl.traffic.methods()
	healReqs := make([]map[string]int64, len(fl.procs))
	for i, p := range fl.procs {
		healReqs[i] = p.traffic.methods()
	}
	if stepwise {
		healReqs = startReqs
	}
	ft.Heal = time.Now()
	heal := ft.Heal
	// Within the TTL, the registry keeps every lease: a process may
	// rightly stay registered throughout; so it may while one member is
	// down, the others serving.
	fl.staying.Store(stepwise || heal.Sub(ft.Unreachable) < o.TTL)
	wctx, cancel := context.WithTimeout(ctx, o.RecoveryTimeout)
	defer cancel()
	switch kind {
	case "cut":
		progress("healing the network")
		reg.heal()
	case "restart":
		progress("starting the cluster again")
		var wg sync.WaitGroup
		errs := make([]error, len(members))
		for i, m := range members {
			wg.Go(func() { errs[i] = m.restart() })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("restart the cluster: %w", err)
		}
	}
	lastLog := time.Now()
	err := fl.waitUntil(wctx, func() bool {
		procs, watchers := fl.recovered()
		if procs == len(fl.procs) && watchers == o.Watchers {
			progress("recovered: %d/%d processes registered, %d/%d watchers exact", procs, len(fl.procs), watchers, o.Watchers)
			return true
		}
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			progress("recovering: %d/%d processes registered, %d/%d watchers exact", procs, len(fl.procs), watchers, o.Watchers)
		}
		return false
	})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		progress("recovery incomplete after %v", o.RecoveryTimeout)
	}
	ft.End = time.Now()
	fr.Window = ms(ft.End.Sub(heal))
	ft.Usable = heal // after a cut: the registry ran throughout
	if leaders != nil {
		ft.Leaders = leaders.stop()
	}
	if kind != "cut" {
		if ft.Usable = leaderAfter(ft.Leaders, heal); ft.Usable.IsZero() {
			progress("no leader within %v", o.RecoveryTimeout)
			ft.Usable = ft.End
		}
	}
	fr.UsableAfterHeal = ms(ft.Usable.Sub(heal))
	fr.ProcessesRegisteredBack, fr.WatchersExact = fl.recovered()
	fr.Stragglers = len(fl.procs) - fr.ProcessesRegisteredBack
	back, watch := fl.recoveryTimes(heal)
	fr.ReregisteredFromHeal = summarizeAll(back, fr.Stragglers, ft.End.Sub(heal))
	fromUsable := make([]time.Duration, len(back))
	for i, r := range back {
		fromUsable[i] = max(0, r-ft.Usable.Sub(heal))
	}
	fr.Reregistered = summarizeAll(fromUsable, fr.Stragglers, ft.End.Sub(ft.Usable))
	fr.WatcherExact = summarize(watch)
	var out []time.Duration
	fr.Left, out = fl.outTimes(ft.End)
	fr.Unregistered = summarize(out)
	for i := 1; i < len(ft.Leaders); i++ {
		if ft.Leaders[i].Leader >= 0 {
			fr.LeaderChanges++
		}
	}
	fr.WindowRequestsPerProcess = float64(fl.traffic.requests()-reqs0) / float64(len(fl.procs))
	fr.RangeReads = fl.traffic.ranges.Load() - ranges0
	fr.WindowRequestsByMethod = make(map[string]float64)
	for m, n := range fl.traffic.methods() {
		if d := n - methods0[m]; d > 0 {
			fr.WindowRequestsByMethod[m] = float64(d) / float64(len(fl.procs))
		}
	}
	fr.RecoveryRequestsByMethod = make(map[string]float64)
	var total int64
	for i, p := range fl.procs {
		p.mu.Lock()
		own := p.recoveryRequestsLocked(healReqs[i])
		if p.fellBack > 0 {
			fr.FellBack++
		}
		p.mu.Unlock()
		var n int64
		for m, c := range own {
			fr.RecoveryRequestsByMethod[m] += float64(c) / float64(len(fl.procs))
			n += c
		}
		total += n
		fr.MaxRecoveryRequests = max(fr.MaxRecoveryRequests, n)
	}
	fr.RecoveryRequests = float64(total) / float64(len(fl.procs))
	if counters0 != nil {
		fr.ServerCounters = make(map[string]float64)
		for name, v := range reg.serverCounters() {
			fr.ServerCounters[name] = v - counters0[name]
		}
	}
	if !stepwise {
		fr.Lies = fl.findLies(ft, o.TTL, o.LieTolerance)
	}
	if fr.Lies == nil {
		fr.Lies = []Lie{}
	}
	if o.Timeline != "" {
		if err := fl.writeTimeline(o.Timeline, o.TTL, &ft, fr.Lies, healReqs); err != nil {
			return nil, err
		}
		progress("timelines written to %s", o.Timeline)
	}
	return fr, nil
}

// summarizeAll is summarize over ds and notBack stragglers, each counted
// as window.
func summarizeAll(ds []time.Duration, notBack int, window time.Duration) Durations {
	all := slices.Clone(ds)
	for range notBack {
		all = append(all, window)
	}
	d := summarize(all)
	d.NotBack = notBack
	return d
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type memStats struct {
	heap             uint64 // the whole process's live heap
	goroutines       int    // the whole process's
	clientHeap       float64
	sites            []HeapShare
	clientGoroutines int
}

// memSnapshot returns the live heap after a GC, and the simulated
// processes' share of it and of the goroutines.
func memSnapshot() memStats {
	// The heap profile can be two cycles old.
	for range 3 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	ch, sites := clientHeap()
	return memStats{heap: m.HeapAlloc, goroutines: runtime.NumGoroutine(), clientHeap: ch, sites: sites,
		clientGoroutines: clientGoroutines()}
}

// byMethod formats requests per method, largest first, as " (Grant 1.00,
// Txn 1.00)".
func byMethod(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.2f", n, m[n])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// WriteReport prints rep as a table, or as JSON when format is "json".
func WriteReport(w io.Writer, format string, rep *Report) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	dist := func(d Durations) string {
		out := fmt.Sprintf("p50 %.1f ms  p99 %.1f ms  max %.1f ms  (n=%d)", d.P50, d.P99, d.Max, d.Count)
		if d.NotBack > 0 {
			out += fmt.Sprintf(", %d not back, counted as the whole window", d.NotBack)
		}
		return out
	}
	where := "prefix"
	if rep.Backend == backends.NATS {
		where = "bucket"
	}
	row(rep.Backend, "%s, %s %s", rep.Mode, where, rep.Prefix)
	row("fleet", "%d processes x %d instances, %d watchers of %d instances", rep.Processes, rep.Instances, rep.Watchers, rep.ServiceSize)
	row("registrations/s", "%.1f", rep.RegistrationsPerSecond)
	row("first registration", "%s", dist(rep.FirstRegistration))
	row("requests/registration", "%.2f (client side)", rep.RequestsPerReg)
	if rep.ServerRequestsPerReg != nil {
		row("", "%.2f (grpc_server_msg_received_total)", *rep.ServerRequestsPerReg)
	}
	if rep.EventsPerReg != nil {
		row("watch events/registration", "%.2f (client side)", *rep.EventsPerReg)
	}
	if rep.ServerEventsPerReg != nil {
		row("", "%.2f (etcd_debugging_mvcc_events_total)", *rep.ServerEventsPerReg)
	}
	if f := rep.Fault; f != nil {
		if len(f.Stopped) > 0 && f.Kind != "restart" {
			row(f.Kind, "%s, members %v", f.Duration, f.Stopped)
		} else {
			row(f.Kind, "%s", f.Duration)
		}
		row("  dials/process/s", "%.2f", f.DialsPerProcessPerSec)
		row("  usable", "%.1f ms after the heal (restart: a leader elected); %d leader changes", f.UsableAfterHeal, f.LeaderChanges)
		row("  registered again", "%d/%d  %s", f.ProcessesRegisteredBack, rep.Processes, dist(f.Reregistered))
		row("", "from the heal: %s", dist(f.ReregisteredFromHeal))
		if f.Left > 0 {
			row("  left registered", "%d/%d  not registered for %s", f.Left, rep.Processes, dist(f.Unregistered))
		}
		if f.FellBack > 0 {
			row("  fell back", "%d processes left registered again after recovering", f.FellBack)
		}
		row("  watchers exact", "%d/%d  %s", f.WatchersExact, rep.Watchers, dist(f.WatcherExact))
		row("  requests/process", "%.2f until back, max %d%s", f.RecoveryRequests, f.MaxRecoveryRequests, byMethod(f.RecoveryRequestsByMethod))
		row("", "%.2f in the %.1f s window%s", f.WindowRequestsPerProcess, f.Window/1000, byMethod(f.WindowRequestsByMethod))
		row("  range reads", "%d", f.RangeReads)
		row("  status lies", "%d", len(f.Lies))
		if len(f.ServerCounters) > 0 {
			names := slices.Sorted(maps.Keys(f.ServerCounters))
			for _, n := range names {
				row("  "+rep.Backend, "%s +%.0f", n, f.ServerCounters[n])
			}
		}
	}
	row("heap/process", "%.1f KiB (roster and its client)", rep.HeapBytesPerProcess/1024)
	for _, s := range rep.HeapSites {
		if s.Bytes >= 1024 {
			row("", "  %.1f KiB  %s", s.Bytes/1024, s.Site)
		}
	}
	if rep.Mode == "embedded" {
		row("", "%.1f KiB (the OS process's growth, with the servers' side of each connection)", rep.ProcessHeapBytesPerProcess/1024)
	}
	row("goroutines/process", "%.1f (roster and its client)", rep.GoroutinesPerProcess)
	if rep.Mode == "embedded" {
		row("", "%.1f (the OS process's growth, with the servers' side of each connection)", rep.ProcessGoroutinesPerProcess)
	}
	if rep.MissingUnknown != "" {
		row("missing at end", "unknown: %s", rep.MissingUnknown)
	} else {
		row("missing at end", "%d", rep.Missing)
	}
	return tw.Flush()
}
