package fleetsim

import (
	"context"

	"github.com/roster-sd/roster/discovery"
)

// registry is the per-backend part of the simulator: it starts the
// embedded cluster (or connects to the user's registry), creates each
// process's backend with its traffic counted, faults the registry and
// reads its server-side counters. Everything else the simulator does
// through roster's own interfaces (processBackend).
type registry interface {
	// prefix names where the fleet's keys live: etcd's prefix, NATS's
	// bucket.
	prefix() string
	// newProcess returns process i's backend, counting its traffic into
	// pt, and what to release once the backend is closed (nil: nothing).
	newProcess(i int, pt *procTraffic) (processBackend, func() error, error)
	// reader returns a backend straight to the registry (no proxy), to
	// check what it holds at the end, and its release.
	reader() (discovery.Resolver, func() error, error)
	// countsEvents reports whether the traffic counts watch events.
	countsEvents() bool
	// registrationCounters returns the server's own counts of watch
	// events and requests received, or nil (not embedded).
	registrationCounters() *serverCounts
	// cut cuts every connection between the fleet and the registry, and
	// holds new ones, until heal.
	cut() error
	heal()
	// members returns the embedded cluster's members, in order; nil
	// against the user's registry.
	members() []member
	// leader returns, polled in process, the index of the member that
	// leads, or -1 while the registry is not usable: see
	// faultTimes.Usable.
	leader() int
	// waitHealthy waits until every member runs and the registry is
	// usable with all of them.
	waitHealthy(ctx context.Context) error
	// serverCounters returns the server-side counters the fault report
	// gives, summed over the members, or nil.
	serverCounters() map[string]float64
	close() error
}

// serverCounts are a server's own counts for the registration phase.
type serverCounts struct {
	events, requests float64
}

// member is a member of an embedded cluster, which the restarts stop and
// start again.
type member interface {
	stop() error
	restart() error
}
