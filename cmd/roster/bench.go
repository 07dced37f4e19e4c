package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	"github.com/roster-sd/roster/discovery"
)

// benchOptions are the flags of roster bench.
type benchOptions struct {
	processes, instances, watchers, serviceSize, concurrency int
	ttl, cut, restart, recoveryTimeout                       time.Duration
	output                                                   string
	cpuBurn                                                  int           // spinning goroutines
	timeline                                                 string        // file for the per-process timelines
	lieTolerance                                             time.Duration // scheduling slack of the status check
	electionTimeout                                          time.Duration // of the embedded cluster
}

// benchReport is what roster bench prints, as a table or as JSON.
type benchReport struct {
	Mode          string `json:"mode"` // "embedded" or "endpoints"
	Prefix        string `json:"prefix"`
	Processes     int    `json:"processes"`
	Instances     int    `json:"instances_per_process"`
	Watchers      int    `json:"watchers"`
	ServiceSize   int    `json:"service_size"`
	Registrations int    `json:"registrations"`

	RegistrationsPerSecond float64   `json:"registrations_per_second"`
	FirstRegistration      durations `json:"first_registration"`
	RequestsPerReg         float64   `json:"requests_per_registration"`
	EventsPerReg           float64   `json:"watch_events_per_registration"`
	// ServerEventsPerReg is etcd's own count (etcd_debugging_mvcc_events_total),
	// embedded mode only.
	ServerEventsPerReg *float64 `json:"server_events_per_registration,omitempty"`
	// ServerRequestsPerReg is etcd's own count of requests received
	// (grpc_server_msg_received_total), embedded mode only.
	ServerRequestsPerReg *float64 `json:"server_requests_per_registration,omitempty"`

	Fault *faultReport `json:"fault,omitempty"`

	// HeapBytesPerProcess and GoroutinesPerProcess are the simulated
	// processes' own, after registration and watch: the live heap and the
	// goroutines of roster and its etcd client, not the embedded servers'
	// side of their connections, nor the bench's observers.
	HeapBytesPerProcess  float64 `json:"heap_bytes_per_process"`
	GoroutinesPerProcess float64 `json:"goroutines_per_process"`
	// HeapSites are the functions that allocated most of that heap, per
	// process.
	HeapSites []heapShare `json:"heap_sites_per_process"`
	// ProcessHeapBytesPerProcess is the growth of the whole OS process's
	// live heap, divided by the processes: in embedded mode it includes
	// the servers' side of each connection.
	ProcessHeapBytesPerProcess float64 `json:"process_heap_bytes_per_process"`
	// ProcessGoroutinesPerProcess is the same for the goroutines.
	ProcessGoroutinesPerProcess float64 `json:"process_goroutines_per_process"`

	Missing int `json:"missing"` // registrations absent from etcd at the end
}

// faultReport describes a cut or restart and the recovery after it.
type faultReport struct {
	Kind                  string  `json:"kind"` // "cut" or "restart"
	Duration              string  `json:"duration"`
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
	// FellBack counts the processes that were registered again, then
	// left registered again before the window ended.
	FellBack      int `json:"processes_fell_back"`
	WatchersExact int `json:"watchers_exact"`
	// Reregistered is the time from the registry being usable until each
	// process had all its instances registered again, over every
	// process: a straggler counts as the whole window (a lower bound).
	Reregistered durations `json:"time_to_registered"`
	// ReregisteredFromHeal is the same from the heal.
	ReregisteredFromHeal durations `json:"time_to_registered_from_heal"`
	WatcherExact         durations `json:"time_to_watcher_exact"`
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
	Lies []lie `json:"lies"`
}

// durations is a distribution summary.
type durations struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	// NotBack of the Count samples are stragglers, counted as the whole
	// window: a percentile that falls on one is a lower bound.
	NotBack int `json:"not_back,omitempty"`
}

// summarize returns the p50, p99 and max of ds (nearest-rank percentiles).
func summarize(ds []time.Duration) durations {
	if len(ds) == 0 {
		return durations{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return durations{Count: len(s), P50: ms(rank(0.50)), P99: ms(rank(0.99)), Max: ms(s[len(s)-1])}
}

func (a *app) benchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Simulate a fleet of roster processes against etcd and report its cost",
		Long: `bench simulates --processes roster processes in this one OS process, each a
real etcd Backend with its own client and connection, each holding
--instances instances. The first --service-size registrations (in process
order) form the service bench-watched; the rest belong to bench-fleet. The
first --watchers processes watch bench-watched.

By default it runs against an embedded 3-member etcd cluster. With
--endpoints it runs against your cluster, under a --prefix of its own
(default: a fresh /roster-bench/<random> per run), which it removes at the
end, whatever happens.

--cut puts an in-process TCP proxy in front of each etcd endpoint and cuts
it (traffic held, connections dropped) for that long: make it longer than
--ttl to force the leases to expire. In embedded mode --restart stops the
whole cluster instead and starts it again after that long.

--cpu-burn N keeps N goroutines spinning in this process for the whole
run, so that the fleet recovers on a busy machine, as real applications
do; --timeline FILE writes every process's status transitions, with
times, and the fault's moments, as JSON.

After a fault the bench checks each process's statuses against the
fault: a process that says registered while the registry has been
unreachable for longer than --ttl (plus --lie-tolerance) lies.

Progress goes to stderr; the report (a table, or -o json) to stdout. The
exit status is 1 if any registration is missing from etcd at the end, if
any process is not registered again after the fault, or if any status
lied.`,
		Example: `  roster bench --processes 100 --watchers 10 --service-size 50 --cut 20s --ttl 15s
  roster bench --processes 1000 --watchers 20 --service-size 50 --restart 25s --cpu-burn 2 --timeline t.json
  roster bench --endpoints 10.0.0.1:2379 --processes 1000 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.scaleDefaults(cmd.Flags().Changed)
			return a.runBench(cmd, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.processes, "processes", 100, "simulated roster processes")
	f.IntVar(&o.instances, "instances", 1, "instances each process registers")
	f.IntVar(&o.watchers, "watchers", 10, "processes that watch the service bench-watched (the default is lowered to --processes)")
	f.IntVar(&o.serviceSize, "service-size", 50, "instances in bench-watched (the default is lowered to --processes x --instances)")
	f.IntVar(&o.concurrency, "concurrency", 8, "processes registering at the same time")
	f.DurationVar(&o.ttl, "ttl", etcd.DefaultTTL, "lease TTL of every process")
	f.DurationVar(&o.cut, "cut", 0, "cut the network between fleet and etcd for this long (0: no cut)")
	f.DurationVar(&o.restart, "restart", 0, "embedded mode: stop the cluster for this long, then start it again")
	f.DurationVar(&o.recoveryTimeout, "recovery-timeout", 2*time.Minute, "give up waiting for recovery after this long")
	f.StringVarP(&o.output, "output", "o", "table", "report format: table or json")
	f.IntVar(&o.cpuBurn, "cpu-burn", 0, "goroutines spinning for the whole run, to measure on a busy machine")
	f.StringVar(&o.timeline, "timeline", "", "write every process's status transitions and the fault's moments as JSON to this file")
	f.DurationVar(&o.lieTolerance, "lie-tolerance", time.Second, "scheduling slack allowed to a status after the TTL (status check)")
	f.DurationVar(&o.electionTimeout, "election-timeout", 500*time.Millisecond, "embedded cluster: etcd's election timeout (heartbeat a tenth of it); etcd's default is 1s")
	return cmd
}

// scaleDefaults lowers the defaults of the flags bounded by others
// (--watchers by --processes, --service-size by --processes x --instances)
// to those bounds when they were not given, so that a small fleet such as
// --processes 20 runs as is. Values given explicitly are left for validate
// to check.
func (o *benchOptions) scaleDefaults(changed func(flag string) bool) {
	if !changed("watchers") {
		o.watchers = max(min(o.watchers, o.processes), 0)
	}
	if !changed("service-size") {
		o.serviceSize = max(min(o.serviceSize, o.processes*o.instances), 0)
	}
}

func (o benchOptions) validate(embedded bool) error {
	switch {
	case o.processes < 1:
		return inputErrorf("invalid --processes %d: want at least 1", o.processes)
	case o.instances < 1:
		return inputErrorf("invalid --instances %d: want at least 1", o.instances)
	case o.watchers < 0 || o.watchers > o.processes:
		return inputErrorf("invalid --watchers %d: want 0..%d (--processes)", o.watchers, o.processes)
	case o.serviceSize < 0 || o.serviceSize > o.processes*o.instances:
		return inputErrorf("invalid --service-size %d: want 0..%d (--processes x --instances)", o.serviceSize, o.processes*o.instances)
	case o.concurrency < 1:
		return inputErrorf("invalid --concurrency %d: want at least 1", o.concurrency)
	case o.cut < 0 || o.restart < 0:
		return inputErrorf("invalid --cut or --restart: want a positive duration")
	case o.cut > 0 && o.restart > 0:
		return inputErrorf("--cut and --restart cannot be combined")
	case o.restart > 0 && !embedded:
		return inputErrorf("--restart needs the embedded cluster; use --cut with --endpoints")
	case o.output != "table" && o.output != "json":
		return inputErrorf("invalid --output %q: want table or json", o.output)
	case o.cpuBurn < 0:
		return inputErrorf("invalid --cpu-burn %d: want 0 or more", o.cpuBurn)
	case o.electionTimeout < 10*time.Millisecond:
		return inputErrorf("invalid --election-timeout %v: want at least 10ms", o.electionTimeout)
	case o.lieTolerance < 0:
		return inputErrorf("invalid --lie-tolerance %v: want 0 or more", o.lieTolerance)
	}
	return nil
}

// runBench runs the phases of roster bench.
func (a *app) runBench(cmd *cobra.Command, o benchOptions) (err error) {
	ctx := cmd.Context()
	fs := cmd.Flags()
	inProcess := !fs.Changed("endpoints") && !cmd.InheritedFlags().Changed("endpoints")
	if err := o.validate(inProcess); err != nil {
		return err
	}
	set, err := loadSettings(cmd.InheritedFlags())
	if err != nil {
		return err
	}
	if set.backend != backends.Etcd {
		return inputErrorf("bench measures the etcd backend; the %s backend has its Go benchmarks (see the README)", set.backend)
	}
	cfg := set.etcd
	if inProcess {
		cfg.Endpoints = nil
	}
	if !cmd.InheritedFlags().Changed("prefix") {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.Prefix = "/roster-bench/" + hex.EncodeToString(b[:])
	}
	cfg.TTL = o.ttl
	cfg.Logger = a.logger(cmd.InheritedFlags())
	progress := func(format string, args ...any) { fmt.Fprintf(a.stderr, "bench: "+format+"\n", args...) }

	rep := benchReport{
		Mode: "endpoints", Prefix: cfg.Prefix, Processes: o.processes, Instances: o.instances,
		Watchers: o.watchers, ServiceSize: o.serviceSize, Registrations: o.processes * o.instances,
	}
	if o.cpuBurn > 0 {
		progress("keeping %d goroutines spinning (--cpu-burn)", o.cpuBurn)
		burn := startCPUBurn(o.cpuBurn)
		defer burn.Close()
	}
	var cluster *embedded.Cluster
	if inProcess {
		rep.Mode = "embedded"
		progress("starting an embedded 3-member etcd cluster")
		opts := []embedded.Option{embedded.WithRaftTiming(o.electionTimeout/10, o.electionTimeout)}
		if v, _ := cmd.InheritedFlags().GetBool("verbose"); v {
			opts = append(opts, embedded.WithLogOutput(a.stderr))
		}
		cluster, err = embedded.NewCluster(3, opts...)
		if err != nil {
			return fmt.Errorf("start embedded etcd: %w", err)
		}
		defer func() { err = errors.Join(err, cluster.Close()) }()
		cfg.Endpoints = cluster.Endpoints()
	}

	// A plain client, straight to etcd, to check and clean up.
	admin, err := clientv3.New(etcd.ClientConfig(cfg))
	if err != nil {
		return fmt.Errorf("connect to etcd: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, derr := admin.Delete(dctx, cfg.Prefix+"/", clientv3.WithPrefix()); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove prefix %s: %w", cfg.Prefix, derr))
		} else {
			progress("removed prefix %s", cfg.Prefix)
		}
		err = errors.Join(err, admin.Close())
	}()

	fleetCfg := cfg
	var proxies []*embedded.Proxy
	if o.cut > 0 {
		fleetCfg.Endpoints = nil
		for _, ep := range cfg.Endpoints {
			p, perr := embedded.NewProxy(ep)
			if perr != nil {
				err = errors.Join(err, fmt.Errorf("start proxy to %s: %w", ep, perr))
				break
			}
			proxies = append(proxies, p)
			fleetCfg.Endpoints = append(fleetCfg.Endpoints, p.Endpoint())
		}
		defer func() {
			for _, p := range proxies {
				err = errors.Join(err, p.Close())
			}
		}()
		if err != nil {
			return err
		}
	}

	// Sample the heap finely while the processes are created, and no
	// longer once measured: sampling costs CPU the recovery needs.
	profileRate := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = profileRate }()
	runtime.MemProfileRate = benchMemProfileRate
	base := memSnapshot()
	progress("creating %d processes", o.processes)
	fl, err := newFleet(fleetCfg, o.processes, o.instances, o.serviceSize)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			err = errors.Join(err, fl.Close())
		}
	}()

	// Registration.
	reqs0, ev0 := fl.traffic.requests(), fl.traffic.events.Load()
	srv0, srvReqs0 := serverEvents(), serverRequests()
	progress("registering %d instances", rep.Registrations)
	var last time.Time
	var lastMu sync.Mutex
	took, err := fl.register(ctx, o.concurrency, func(done int) {
		lastMu.Lock()
		defer lastMu.Unlock()
		if done == o.processes || time.Since(last) >= time.Second {
			last = time.Now()
			progress("registered %d/%d processes", done, o.processes)
		}
	})
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	regs := float64(rep.Registrations)
	rep.RegistrationsPerSecond = regs / took.Seconds()
	var firsts []time.Duration
	for _, p := range fl.procs {
		firsts = append(firsts, p.firstReg)
	}
	rep.FirstRegistration = summarize(firsts)
	rep.RequestsPerReg = float64(fl.traffic.requests()-reqs0) / regs
	rep.EventsPerReg = float64(fl.traffic.events.Load()-ev0) / regs
	if inProcess {
		v := (serverEvents() - srv0) / regs
		rep.ServerEventsPerReg = &v
		r := (serverRequests() - srvReqs0) / regs
		rep.ServerRequestsPerReg = &r
	}

	if o.watchers > 0 {
		progress("starting %d watchers of %d instances", o.watchers, o.serviceSize)
		wctx, cancel := context.WithTimeout(ctx, o.recoveryTimeout)
		err := fl.watch(wctx, o.watchers)
		cancel()
		if err != nil {
			return fmt.Errorf("watchers did not get the exact set: %w", err)
		}
	}
	mem := memSnapshot()
	runtime.MemProfileRate = profileRate
	perProc := func(v float64) float64 { return v / float64(o.processes) }
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
			rep.HeapSites = append(rep.HeapSites, heapShare{Site: s.Site, Bytes: b})
		}
	}
	slices.SortFunc(rep.HeapSites, func(a, b heapShare) int { return cmp.Compare(b.Bytes, a.Bytes) })
	if len(rep.HeapSites) > 8 {
		rep.HeapSites = rep.HeapSites[:8]
	}

	if o.cut > 0 || o.restart > 0 {
		fr, err := a.fault(ctx, fl, o, cluster, proxies, progress)
		if err != nil {
			return err
		}
		rep.Fault = fr
	} else if o.timeline != "" {
		if err := fl.writeTimeline(o.timeline, o.ttl, nil, nil, nil); err != nil {
			return err
		}
	}

	// Verification, with a plain client straight to etcd.
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	missing, err := missingRegistrations(vctx, admin, cfg, fl.registrations())
	if err != nil {
		return err
	}
	rep.Missing = missing
	progress("closing the fleet")
	closed = true
	if err := fl.Close(); err != nil {
		// Not the figures' concern: a lease not revoked expires with its
		// TTL. On a loaded cluster revokes time out.
		progress("closing the fleet: %d errors, the first: %v", len(strings.Split(err.Error(), "\n")), errors.Unwrap(err))
	}
	if err := writeBenchReport(a.stdout, o.output, rep); err != nil {
		return err
	}
	var fails []error
	if rep.Missing > 0 {
		fails = append(fails, fmt.Errorf("%d of %d registrations missing from etcd at the end", rep.Missing, rep.Registrations))
	}
	if f := rep.Fault; f != nil {
		if f.Stragglers > 0 {
			fails = append(fails, fmt.Errorf("%d of %d processes not registered again within %v", f.Stragglers, rep.Processes, o.recoveryTimeout))
		}
		if len(f.Lies) > 0 {
			l := f.Lies[0]
			fails = append(fails, fmt.Errorf("%d statuses lied: process %d said registered (since %s) when the registry had been unreachable for %s (TTL %v)",
				len(f.Lies), l.Process, l.Since.Format("15:04:05.000"), l.Unconfirmed, o.ttl))
		}
	}
	return errors.Join(fails...)
}

// missingRegistrations counts the registrations that etcd does not hold,
// reading each of their services once through a Backend on cli.
func missingRegistrations(ctx context.Context, cli *clientv3.Client, cfg etcd.Config, regs []discovery.Key) (int, error) {
	b, err := etcd.NewWithClient(cli, cfg)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	have := make(map[discovery.Key]bool)
	read := make(map[string]bool)
	missing := 0
	for _, k := range regs {
		if !read[k.Service] {
			read[k.Service] = true
			set, err := b.Resolve(ctx, k.Service)
			if err != nil {
				return 0, fmt.Errorf("read service %s under %s: %w", k.Service, cfg.Prefix, err)
			}
			for _, in := range set {
				have[in.Key()] = true
			}
		}
		if !have[k] {
			missing++
		}
	}
	return missing, nil
}

// benchServerCounters are etcd's counters the fault report gives, the
// evidence of what the members did during a fault and its recovery.
var benchServerCounters = []string{
	"grpc_server_msg_received_total",
	"grpc_server_handled_total",
	"etcd_server_leader_changes_seen_total",
	"etcd_server_proposals_failed_total",
	"etcd_server_slow_apply_total",
	"etcd_server_slow_read_indexes_total",
	"etcd_debugging_server_lease_expired_total",
	"etcd_server_client_requests_total",
}

// fault cuts the fleet off (or restarts the cluster), heals, and measures
// the recovery.
func (a *app) fault(ctx context.Context, fl *fleet, o benchOptions, cluster *embedded.Cluster, proxies []*embedded.Proxy,
	progress func(string, ...any)) (*faultReport, error) {
	fr := &faultReport{Kind: "cut", Duration: o.cut.String()}
	d := o.cut
	if o.restart > 0 {
		fr.Kind, fr.Duration, d = "restart", o.restart.String(), o.restart
	}
	counters0 := make(map[string]float64)
	if cluster != nil {
		for _, name := range benchServerCounters {
			counters0[name] = serverCounter(name)
		}
	}
	var leaders *leaderLog
	if cluster != nil {
		leaders = startLeaderLog(cluster)
		defer leaders.stop()
	}
	fl.markCut()
	dials0 := fl.traffic.dials.Load()
	var ft faultTimes
	ft.Start = time.Now()
	start := ft.Start
	if o.cut > 0 {
		progress("cutting the network for %v", d)
		for _, p := range proxies {
			p.Blackhole()
			if err := p.DropConnections(); err != nil {
				return nil, err
			}
		}
	} else {
		progress("stopping the cluster for %v", d)
		for _, m := range cluster.Members() {
			if err := m.Stop(); err != nil {
				return nil, fmt.Errorf("stop etcd: %w", err)
			}
		}
	}
	ft.Unreachable = time.Now()
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, ctx.Err()
	case <-t.C:
	}
	fr.DialsPerProcessPerSec = float64(fl.traffic.dials.Load()-dials0) / float64(len(fl.procs)) / time.Since(start).Seconds()
	reqs0, ranges0, methods0 := fl.traffic.requests(), fl.traffic.ranges.Load(), fl.traffic.methods()
	healReqs := make([]map[string]int64, len(fl.procs))
	for i, p := range fl.procs {
		healReqs[i] = p.traffic.methods()
	}
	ft.Heal = time.Now()
	heal := ft.Heal
	// Within the TTL, etcd keeps every lease: a process may rightly stay
	// registered throughout.
	fl.staying.Store(heal.Sub(ft.Unreachable) < o.ttl)
	wctx, cancel := context.WithTimeout(ctx, o.recoveryTimeout)
	defer cancel()
	if o.cut > 0 {
		progress("healing the network")
		for _, p := range proxies {
			p.Unblackhole()
		}
	} else {
		progress("starting the cluster again")
		var wg sync.WaitGroup
		errs := make([]error, len(cluster.Members()))
		for i, m := range cluster.Members() {
			wg.Go(func() { errs[i] = m.Restart() })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("restart etcd: %w", err)
		}
	}
	lastLog := time.Now()
	err := fl.waitUntil(wctx, func() bool {
		procs, watchers := fl.recovered()
		if procs == len(fl.procs) && watchers == o.watchers {
			progress("recovered: %d/%d processes registered, %d/%d watchers exact", procs, len(fl.procs), watchers, o.watchers)
			return true
		}
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			progress("recovering: %d/%d processes registered, %d/%d watchers exact", procs, len(fl.procs), watchers, o.watchers)
		}
		return false
	})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		progress("recovery incomplete after %v", o.recoveryTimeout)
	}
	ft.End = time.Now()
	fr.Window = ms(ft.End.Sub(heal))
	ft.Usable = heal // after a cut: the registry ran throughout
	if leaders != nil {
		ft.Leaders = leaders.stop()
	}
	if o.restart > 0 {
		if ft.Usable = leaderAfter(ft.Leaders, heal); ft.Usable.IsZero() {
			progress("no leader within %v", o.recoveryTimeout)
			ft.Usable = ft.End
		}
	}
	fr.UsableAfterHeal = ms(ft.Usable.Sub(heal))
	fr.ProcessesRegisteredBack, fr.WatchersExact = fl.recovered()
	fr.Stragglers = len(fl.procs) - fr.ProcessesRegisteredBack
	reg, watch := fl.recoveryTimes(heal)
	fr.ReregisteredFromHeal = summarizeAll(reg, fr.Stragglers, ft.End.Sub(heal))
	fromUsable := make([]time.Duration, len(reg))
	for i, r := range reg {
		fromUsable[i] = max(0, r-ft.Usable.Sub(heal))
	}
	fr.Reregistered = summarizeAll(fromUsable, fr.Stragglers, ft.End.Sub(ft.Usable))
	fr.WatcherExact = summarize(watch)
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
	if cluster != nil {
		fr.ServerCounters = make(map[string]float64)
		for _, name := range benchServerCounters {
			fr.ServerCounters[name] = serverCounter(name) - counters0[name]
		}
	}
	fr.Lies = fl.findLies(ft, o.ttl, o.lieTolerance)
	if fr.Lies == nil {
		fr.Lies = []lie{}
	}
	if o.timeline != "" {
		if err := fl.writeTimeline(o.timeline, o.ttl, &ft, fr.Lies, healReqs); err != nil {
			return nil, err
		}
		progress("timelines written to %s", o.timeline)
	}
	return fr, nil
}

// summarizeAll is summarize over ds and notBack stragglers, each counted
// as window.
func summarizeAll(ds []time.Duration, notBack int, window time.Duration) durations {
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
	sites            []heapShare
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

// serverCounter sums one of etcd's counters over the embedded members
// (they register their metrics on Prometheus' default registry).
func serverCounter(name string) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// serverEvents is etcd's count of watch events sent.
func serverEvents() float64 { return serverCounter("etcd_debugging_mvcc_events_total") }

// serverRequests is etcd's count of request messages received: unary
// calls and messages on streams.
func serverRequests() float64 { return serverCounter("grpc_server_msg_received_total") }

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

// writeBenchReport prints rep as a table or as JSON.
func writeBenchReport(w io.Writer, format string, rep benchReport) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	dist := func(d durations) string {
		out := fmt.Sprintf("p50 %.1f ms  p99 %.1f ms  max %.1f ms  (n=%d)", d.P50, d.P99, d.Max, d.Count)
		if d.NotBack > 0 {
			out += fmt.Sprintf(", %d not back, counted as the whole window", d.NotBack)
		}
		return out
	}
	row("etcd", "%s, prefix %s", rep.Mode, rep.Prefix)
	row("fleet", "%d processes x %d instances, %d watchers of %d instances", rep.Processes, rep.Instances, rep.Watchers, rep.ServiceSize)
	row("registrations/s", "%.1f", rep.RegistrationsPerSecond)
	row("first registration", "%s", dist(rep.FirstRegistration))
	row("requests/registration", "%.2f (client side)", rep.RequestsPerReg)
	if rep.ServerRequestsPerReg != nil {
		row("", "%.2f (grpc_server_msg_received_total)", *rep.ServerRequestsPerReg)
	}
	row("watch events/registration", "%.2f (client side)", rep.EventsPerReg)
	if rep.ServerEventsPerReg != nil {
		row("", "%.2f (etcd_debugging_mvcc_events_total)", *rep.ServerEventsPerReg)
	}
	if f := rep.Fault; f != nil {
		row(f.Kind, "%s", f.Duration)
		row("  dials/process/s", "%.2f", f.DialsPerProcessPerSec)
		row("  usable", "%.1f ms after the heal (restart: a leader elected)", f.UsableAfterHeal)
		row("  registered again", "%d/%d  %s", f.ProcessesRegisteredBack, rep.Processes, dist(f.Reregistered))
		row("", "from the heal: %s", dist(f.ReregisteredFromHeal))
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
				row("  etcd", "%s +%.0f", n, f.ServerCounters[n])
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
		row("", "%.1f KiB (the OS process's growth, with etcd's side of each connection)", rep.ProcessHeapBytesPerProcess/1024)
	}
	row("goroutines/process", "%.1f (roster and its client)", rep.GoroutinesPerProcess)
	if rep.Mode == "embedded" {
		row("", "%.1f (the OS process's growth, with etcd's side of each connection)", rep.ProcessGoroutinesPerProcess)
	}
	row("missing at end", "%d", rep.Missing)
	return tw.Flush()
}
