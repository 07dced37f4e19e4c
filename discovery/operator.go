package discovery

import (
	"context"
	"time"
)

// OperatorView is implemented by backends that let an operator's tool see
// and fix the whole registry, whoever registered the instances: the roster
// command line (ls, deregister, ui), its web view, and a server that
// follows the registry for clients outside Go. It is optional, like
// FactsReporter: applications resolve and watch the services they use
// (Resolver) and need none of it. Each of roster's backends implements it,
// and a user's backend that does gets the command line and the web view.
//
// Entries that are not roster instances are passed over: those the
// registry holds in roster's own reserved layout (such as an operator's
// maintenance override, kept apart from the instance's key) silently, and
// those someone else wrote as SkippedEntry. Instances are read through the
// backend's own decoding, the one Resolve and Watch use, so that what an
// operator's tool shows is what clients see (conditions, reasons, weights,
// zones, and any override the backend merges).
//
// Implementations are safe for concurrent use. Calls made after the
// backend's Close fail with an error wrapping ErrClosed; an invalid service
// name or ID gives an error wrapping ErrInvalidInstance, and nothing is
// read or written; a registry that cannot be reached gives an error
// wrapping ErrUnavailable (or ctx's error).
type OperatorView interface {
	// Services lists every service that has instances, with their
	// number, sorted by name, and the entries passed over. It may count
	// entries without decoding them (etcd counts keys), so a count may
	// include an entry that Instances skips.
	Services(ctx context.Context) ([]ServiceSummary, []SkippedEntry, error)

	// Instances lists the instances of service, sorted by ID, each with
	// what keeps it alive and the time that has left, and the entries
	// passed over.
	Instances(ctx context.Context, service string) ([]InstanceInfo, []SkippedEntry, error)

	// Delete removes the instance service/id whoever registered it: an
	// operator's fix for a stale entry. A live registrar writes its
	// instance back. No such instance gives an error wrapping
	// ErrNotRegistered.
	Delete(ctx context.Context, service, id string) error

	// FindServices reports the services as they appear: it calls found
	// with every service that has instances (sorted, possibly none: the
	// read succeeded), then with the services of instances written, until
	// ctx ends (it then returns ctx's error) or it cannot go on (any other
	// error; calling it again reads the registry again). found may be
	// given a service more than once, and is called from FindServices's
	// goroutine.
	FindServices(ctx context.Context, found func(services []string)) error

	// FollowRegistry follows every instance of the registry with one
	// watch, whatever the number of services: it reads every instance and
	// calls apply with them (an update with Reset), then with the whole
	// new set of each service that changed, until ctx ends (it then
	// returns ctx's error) or it cannot go on (any other error: calling it
	// again starts with a Reset). It tells apply when the registry stops
	// answering (Unreachable), and when it answers again (an update
	// without it). apply is called from FollowRegistry's goroutine, one
	// update at a time, and must not keep the update's slices.
	FollowRegistry(ctx context.Context, apply func(RegistryUpdate)) error

	// ReadLease reads the time left on lease, as named by
	// LeasedInstance.Lease or InstanceInfo.Lease: one request to the
	// registry. A lease that has run out, or is gone, reads as not Found
	// with no error.
	ReadLease(ctx context.Context, lease string) (LeaseInfo, error)

	// Where says where the registry keeps its instances, for an
	// operator's messages: "under /roster/services", "in bucket roster".
	Where() string

	// EntryOf names the registry's entry of instance k, for an
	// operator's messages: "key /roster/services/payments/p-1".
	EntryOf(k Key) string
}

// ServiceSummary is one service as OperatorView.Services lists it.
type ServiceSummary struct {
	// Service is the service's name.
	Service string
	// Instances is the number of its instances.
	Instances int
}

// SkippedEntry is an entry of the registry that an OperatorView passed
// over because it does not hold what roster writes there: someone other
// than roster wrote it.
type SkippedEntry struct {
	// Key is the registry's key, as it is: it may hold any bytes.
	Key string
	// Err says why it was skipped. Its text may quote what was read.
	Err error
}

// LeasedInstance is an instance with what keeps it alive in the registry.
type LeasedInstance struct {
	Instance
	// Lease names what keeps the instance alive, for ReadLease: on etcd
	// the lease (in hex), which a process's instances share; on NATS the
	// instance's own key, which its process renews. Empty for an instance
	// that nothing expires.
	Lease string
}

// InstanceInfo is one instance as OperatorView.Instances lists it.
type InstanceInfo struct {
	LeasedInstance
	// HasTTL reports whether TTL is known: false for an instance without
	// a lease or a TTL, which stays until someone deletes it.
	HasTTL bool
	// TTL is the time its lease had left when it was read; negative once
	// it has run out (the registry has not removed the instance yet).
	TTL time.Duration
}

// ServiceSet is the whole set of one service's instances, sorted by ID.
type ServiceSet struct {
	// Service is the service's name.
	Service string
	// Instances is its set; empty when the service has none left.
	Instances []LeasedInstance
}

// RegistryUpdate is what OperatorView.FollowRegistry reports at once.
type RegistryUpdate struct {
	// Reset says that Services holds every service of the registry that
	// has instances: any other has none.
	Reset bool
	// Services holds the whole new set of each service that changed (all
	// of them with Reset).
	Services []ServiceSet
	// Unreachable, when not nil, says the registry does not answer now
	// (the instances known are kept); it wraps ErrUnavailable. An update
	// without it says the registry answers.
	Unreachable error
}

// LeaseInfo is a lease as OperatorView.ReadLease reads it.
type LeaseInfo struct {
	// Found is false if the lease has run out or is gone.
	Found bool
	// Left is the time left on it.
	Left time.Duration
	// Granted is the TTL it runs from when renewed; 0 if not known.
	Granted time.Duration
}
