// Package etcd is roster's etcd backend: a discovery.Backend that keeps a
// process's instances registered in etcd for as long as the process lives
// and resolves and watches the live set.
//
// # Registration lifecycle
//
// A Backend holds one lease (TTL 15 s by default) shared by all of its
// instances, so keep-alive traffic is one stream per process whatever the
// instance count. Each instance is the key <Prefix>/<service>/<id> holding
// the instance as JSON, attached to that lease.
//
// When keep-alive fails (etcd stopped, network cut, lease expired or
// revoked) the Backend logs a warning with the cause and the next delay and
// retries with its retry.Policy (1 s, 2 s, 4 s ... capped at 30 s,
// jittered). Each attempt asks etcd to grant the lease again under its own
// ID, one request that checks and acts: etcd refuses if it still holds the
// lease (it does through a restart), which the Backend then keeps, reading
// it with the keys under it to re-publish any missing (an etcd restored
// from a backup has the lease without the keys written after the backup);
// otherwise etcd grants it anew, empty, and the Backend re-publishes every
// instance in one transaction per 128 instances. An etcd whose history went
// back (wiped, or restored from a backup) is noticed when the own-key watch
// resumes from a revision it has not reached: the key is checked and
// watched again from the present. Keep-alive requests go every third of the TTL on a stream of
// the Backend's own, the first a third of the TTL after a grant. The moment the connection to etcd becomes
// usable again it retries at once instead of sleeping out the backoff, and
// the gRPC reconnect backoff under the etcd client is bounded
// (Config.ReconnectDelay) so that moment comes quickly after an outage of any
// length. A key deleted by someone else, or the lease revoked by someone
// else, is restored within milliseconds: the Backend watches its own keys.
//
// If another process registers the same service and ID, the later writer
// owns the key; the earlier Backend reports discovery.StateConflict, logs an
// error, and takes the key back only once it is gone.
//
// Deregister deletes the key at once, or, with etcd unreachable, once it
// answers: it waits within its context, then returns an error wrapping
// discovery.ErrUnavailable while the delete stays pending. Close revokes
// the lease, so watchers see every instance leave at once rather than
// after the TTL.
//
// The state of every registration (registering, registered, retrying, lost,
// conflict, deregistered) is available through the discovery.StatusReporter
// methods for readiness probes, logs and metrics.
//
// # Resolving and watching
//
// Resolve is one range read. The watchers of a service share one etcd
// watch, which lists the service and then follows its events; after an
// outage it resumes from the revision it reached and tells the watchers
// their set is fresh only once it has caught up with etcd (a progress
// notification), so that set is the current one. A watch that etcd ends
// (a member without a leader, say) reports the outage to the watchers
// until it is back. Sets carry etcd's revision
// (discovery.RevisionResolver).
//
// To notice an etcd that was wiped while keeping its cluster ID, the
// first watch of a history writes the key <Prefix>/~history with a random
// value, once; watches read it with their list and once per process after
// each reconnection, and list again when it changed. A client without
// write permission under the prefix skips it.
//
// # Operators' tools
//
// The Backend implements discovery.OperatorView for tools that show and
// fix the registry under its prefix whoever registered the instances,
// such as the roster command line and its web view: the services with
// their instance counts, the instances of one service with their leases
// and the time left on each, the removal of a stale entry by service and
// ID, and, for a live view of the whole registry, FindServices and
// FollowRegistry (one watch over the prefix, meant for one such tool, not
// for every application). Keys under the prefix that roster did not write
// are reported as discovery.SkippedEntry rather than failing the listing;
// roster's own reserved keys (a key whose remainder after
// <Prefix>/<service>/ starts with '~', and <Prefix>/~history) are passed
// over silently.
package etcd
