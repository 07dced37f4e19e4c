package discovery

import "context"

// Registrar publishes instances in a registry and keeps them published.
//
// Implementations are safe for concurrent use.
type Registrar interface {
	// Register publishes in and returns once the registry durably holds it.
	// From then on the Registrar keeps it published, through registry
	// restarts, partitions and expired sessions, until Deregister or Close.
	//
	// Registering the same service and ID again updates the published
	// instance in place. An empty ID is derived from Address (see
	// IDFromAddress). An invalid instance gives an error wrapping
	// ErrInvalidInstance and writes nothing. If ctx ends before the write
	// is durable, Register returns ctx's error and leaves nothing behind.
	// After Close it returns ErrClosed.
	Register(ctx context.Context, in Instance) error

	// Deregister removes in (matched by Service and ID, or Service and the
	// ID derived from Address) from the registry now, not at the end of a
	// lease, and stops keeping it published. It returns an error wrapping
	// ErrNotRegistered if this Registrar does not hold it, and ErrClosed
	// after Close.
	//
	// It returns nil only once the registry no longer holds the instance.
	// While the registry is unreachable it waits for it, within ctx: when
	// ctx ends first, it returns an error wrapping both ErrUnavailable and
	// ctx's error. Either way the Registrar has stopped keeping the
	// instance published (Status no longer says registered) and removes
	// the key once the registry answers (at the latest, it expires with
	// its lease or TTL). A Deregister given an ended context follows the
	// same rule.
	Deregister(ctx context.Context, in Instance) error

	// Close deregisters every instance this Registrar holds, stops all of
	// its goroutines and releases its resources; it returns once they have
	// stopped. Its removals are bounded in time (by the backend's request
	// timeout), so Close returns even when the registry is unreachable.
	//
	// Close returns nil only if it removed every instance. Otherwise its
	// error names each instance it could not remove (by its key in the
	// registry, which holds its ID), joins the failures with errors.Join,
	// and wraps ErrUnavailable when the registry could not be reached;
	// those instances leave the registry when their lease or TTL ends.
	// Close is idempotent: later calls return nil.
	Close() error
}

// Resolver reads the live set of instances of a service.
//
// Implementations are safe for concurrent use.
type Resolver interface {
	// Resolve returns the current instances of service, sorted by ID. The
	// slice and its instances are the caller's to keep and modify. An
	// unknown service has an empty set, not an error.
	//
	// A service name that ValidateName rejects (the rules of
	// Instance.Service) can hold no instance: Resolve and Watch return an
	// error wrapping ErrInvalidInstance, with a *FieldError naming the
	// Service field and the reason, and read nothing. An empty set would
	// read as "no instance yet" and hide the caller's mistake.
	Resolve(ctx context.Context, service string) ([]Instance, error)

	// Watch follows the set of instances of service, as etcd's and gRPC's
	// streams do: ctx bounds the whole watch, not only its setup. The
	// Watcher lives, through every transient fault of the registry, until
	// Stop, until ctx ends or until the Resolver is closed; the end of ctx
	// stops it as Stop does.
	Watch(ctx context.Context, service string) (Watcher, error)
}

// Watcher follows the instance set of one service.
//
// Next may be called from one goroutine at a time; Stop may be called from
// any goroutine, at any time, any number of times.
type Watcher interface {
	// Next returns the current set, sorted by ID, on its first call, and
	// afterwards blocks until the set differs from the one it last returned.
	// Changes that happen between two calls are coalesced: Next returns the
	// newest set, never a backlog and never a set older than one already
	// returned. It returns ctx's error when ctx ends, and an error wrapping
	// ErrClosed after Stop, once the Resolver is closed, or once the context
	// given to Watch has ended (that error also wraps the context's cause).
	//
	// When the registry becomes unreachable, Next may return an error
	// wrapping ErrUnavailable, once per outage. That error is transient:
	// the Watcher keeps following the service, and once the registry is
	// back Next returns the current set, even if it equals the last one,
	// so the caller knows its view is fresh again.
	Next(ctx context.Context) ([]Instance, error)

	// Stop ends the watch and unblocks a pending Next. It is idempotent.
	Stop()
}

// RevisionResolver is an optional interface of a Resolver whose sets carry
// the registry's revision (etcd's revision, a stream sequence, a counter),
// so that a client that uses both Resolve and Watch, as package
// grpcresolver does, can tell an older set from a newer one and never go
// back to the older.
//
// Of two sets of one service from one RevisionResolver, the one with the
// higher revision is the newer. Zero means unknown and orders nothing. A
// registry that starts a new history (wiped, restored from a backup) may
// give lower revisions afterwards; its Watchers report the outage first
// (an error wrapping ErrUnavailable), and a client compares no revision
// across it.
type RevisionResolver interface {
	Resolver

	// ResolveRevision is Resolve that also returns the revision at which
	// the set was read.
	ResolveRevision(ctx context.Context, service string) ([]Instance, uint64, error)
}

// RevisionWatcher is an optional interface of the Watchers of a
// RevisionResolver: see RevisionResolver.
type RevisionWatcher interface {
	Watcher

	// NextRevision is Next that also returns the revision at which the
	// set was known to be current (zero if unknown).
	NextRevision(ctx context.Context) ([]Instance, uint64, error)
}

// Backend is a registry that can both publish and resolve instances.
type Backend interface {
	Registrar
	Resolver
}

// StatusReporter is implemented by backends that report the state of their
// registrations (each of roster's three backends does: etcd, NATS and
// memory). Applications use it for readiness probes, logs, metrics and
// alerts.
type StatusReporter interface {
	// Status returns the current status of the registration of
	// service/id held by this backend, or an error wrapping
	// ErrNotRegistered.
	Status(service, id string) (Status, error)

	// Statuses returns the current status of every registration held by
	// this backend, sorted by Service and ID.
	Statuses() []Status

	// SubscribeStatus returns a subscription that first yields the current
	// status of every registration and then every change, without polling.
	// A slow subscriber never blocks the backend (see StatusSubscription).
	SubscribeStatus() StatusSubscription
}

// StatusSubscription delivers the status changes of a backend's
// registrations to one subscriber, from StatusReporter.SubscribeStatus.
//
// A subscriber that falls behind may skip intermediate states of a
// registration, but it always gets the latest state of every registration,
// and the backend never waits for it.
//
// Next may be called from one goroutine at a time; Stop may be called from
// any goroutine, at any time, any number of times.
type StatusSubscription interface {
	// Next returns the next status change, in the order registrations
	// changed, blocking until there is one. It returns ctx's error when ctx
	// ends, and an error wrapping ErrClosed once the subscription is stopped,
	// or once the backend is closed and nothing is pending.
	Next(ctx context.Context) (Status, error)

	// Stop ends the subscription and drops what is pending; a blocked Next
	// returns an error wrapping ErrClosed. It is idempotent.
	Stop()
}
