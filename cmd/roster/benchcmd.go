package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/internal/fleetsim"
)

// benchOptions are the flags of roster bench.
type benchOptions struct {
	processes, instances, watchers, serviceSize, concurrency int
	ttl, cut, restart, recoveryTimeout                       time.Duration
	restartMembers, restartLeader                            time.Duration
	output                                                   string
	cpuBurn                                                  int           // spinning goroutines
	timeline                                                 string        // file for the per-process timelines
	lieTolerance                                             time.Duration // scheduling slack of the status check
	electionTimeout                                          time.Duration // of the embedded cluster
}

// benchReport is what roster bench prints (package fleetsim's Report).
type benchReport = fleetsim.Report

func (a *app) benchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Simulate a fleet of roster processes against etcd or NATS and report its cost",
		Long: `bench simulates --processes roster processes in this one OS process, each a
real Backend (etcd's, or NATS's with --backend nats) with its own client
and connection, each holding --instances instances. The first --service-size registrations (in process
order) form the service bench-watched; the rest belong to bench-fleet. The
first --watchers processes watch bench-watched.

By default it runs against an embedded 3-member etcd cluster. With
--endpoints it runs against your cluster, under a --prefix of its own
(default: a fresh /roster-bench/<random> per run), which it removes at the
end, whatever happens. With --backend nats it runs against an embedded
3-node NATS cluster with JetStream, the bucket replicated on all three.

--cut puts an in-process TCP proxy in front of each endpoint and cuts it
(traffic held, connections dropped) for that long: make it longer than
--ttl to force the leases to expire. In embedded mode --restart stops the
whole cluster instead and starts it again after that long;
--restart-members stops one member at a time for that long, starting it
again and waiting until the cluster counts it before the next (each
process is then given every endpoint, to fail over); --restart-leader
stops the leader alone (etcd: the raft leader; NATS: the leader of the
bucket's stream).

--cpu-burn N keeps N goroutines spinning in this process for the whole
run, so that the fleet recovers on a busy machine, as real applications
do; --timeline FILE writes every process's status transitions, with
times, and the fault's moments, as JSON.

After a fault the bench checks each process's statuses against the
fault: a process that says registered while the registry has been
unreachable for longer than --ttl (plus --lie-tolerance) lies.

Progress goes to stderr; the report (a table, or -o json) to stdout. The
exit status is 1 if any registration is missing from the registry at the end, if
any process is not registered again after the fault, or if any status
lied.`,
		Example: `  roster bench --processes 100 --watchers 10 --service-size 50 --cut 20s --ttl 15s
  roster bench --processes 1000 --watchers 20 --service-size 50 --restart 25s --cpu-burn 2 --timeline t.json
  roster bench --backend nats --processes 100 --watchers 10 --service-size 50 --restart-leader 20s --ttl 15s
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
	f.DurationVar(&o.ttl, "ttl", etcd.DefaultTTL, "lease TTL of every process (NATS: whole seconds)")
	f.DurationVar(&o.cut, "cut", 0, "cut the network between fleet and registry for this long (0: no cut)")
	f.DurationVar(&o.restart, "restart", 0, "embedded mode: stop the cluster for this long, then start it again")
	f.DurationVar(&o.restartMembers, "restart-members", 0, "embedded mode: stop each member in turn for this long, then start it again")
	f.DurationVar(&o.restartLeader, "restart-leader", 0, "embedded mode: stop the leader for this long, then start it again")
	f.DurationVar(&o.recoveryTimeout, "recovery-timeout", 2*time.Minute, "give up waiting for recovery after this long")
	f.StringVarP(&o.output, "output", "o", "table", "report format: table or json")
	f.IntVar(&o.cpuBurn, "cpu-burn", 0, "goroutines spinning for the whole run, to measure on a busy machine")
	f.StringVar(&o.timeline, "timeline", "", "write every process's status transitions and the fault's moments as JSON to this file")
	f.DurationVar(&o.lieTolerance, "lie-tolerance", time.Second, "scheduling slack allowed to a status after the TTL (status check)")
	f.DurationVar(&o.electionTimeout, "election-timeout", time.Second, "embedded cluster: etcd's election timeout, heartbeat a tenth of it (etcd's defaults)")
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

// runBench turns the flags into a simulation (package fleetsim), runs it
// and prints its report.
func (a *app) runBench(cmd *cobra.Command, o benchOptions) error {
	inherited := cmd.InheritedFlags()
	set, err := loadSettings(inherited)
	if err != nil {
		return err
	}
	so := fleetsim.Options{
		Backend: set.backend, Etcd: set.etcd, NATS: set.nats,
		Processes: o.processes, Instances: o.instances, Watchers: o.watchers, ServiceSize: o.serviceSize,
		Concurrency: o.concurrency, TTL: o.ttl, RecoveryTimeout: o.recoveryTimeout,
		Cut: o.cut, Restart: o.restart, RestartMembers: o.restartMembers, RestartLeader: o.restartLeader,
		CPUBurn: o.cpuBurn, Timeline: o.timeline, LieTolerance: o.lieTolerance, ElectionTimeout: o.electionTimeout,
		Progress: func(format string, args ...any) { fmt.Fprintf(a.stderr, "bench: "+format+"\n", args...) },
	}
	if !cmd.Flags().Changed("endpoints") && !inherited.Changed("endpoints") {
		so.Etcd.Endpoints, so.NATS.Endpoints = nil, nil
	}
	if set.backend == backends.NATS {
		// Against the embedded cluster: the bucket of the settings
		// (default "roster") is the cluster's own.
		so.Etcd = etcd.Config{}
	} else {
		so.NATS = nats.Config{}
	}
	if err := so.Validate(); err != nil {
		return inputError{err}
	}
	if o.output != "table" && o.output != "json" {
		return inputErrorf("invalid --output %q: want table or json", o.output)
	}
	if set.backend == backends.Etcd && !inherited.Changed("prefix") {
		var b [6]byte
		_, _ = rand.Read(b[:])
		so.Etcd.Prefix = "/roster-bench/" + hex.EncodeToString(b[:])
	}
	so.Etcd.Logger = a.logger(inherited)
	so.NATS.Logger = so.Etcd.Logger
	if v, _ := inherited.GetBool("verbose"); v {
		so.ServerLog = a.stderr
	}
	rep, err := fleetsim.Run(cmd.Context(), so)
	if err != nil {
		return err
	}
	if err := fleetsim.WriteReport(a.stdout, o.output, rep); err != nil {
		return err
	}
	return errors.Join(rep.Failures(o.recoveryTimeout, o.ttl)...)
}
