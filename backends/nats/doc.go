// Package nats is roster's NATS backend: a discovery.Backend and
// discovery.StatusReporter on a JetStream key-value bucket (nats-server
// 2.11 or later).
//
// # Layout
//
// One bucket (Config.Bucket, default "roster") holds one key per
// instance, "<service>.<id>", whose value is the instance as JSON. Each
// name is one NATS subject token in which every '.' is written '=':
// roster's names hold only letters, digits, '.', '_' and '-', so the
// mapping is reversible and no key can hold a wildcard, an extra token or
// a space. Payments' instance "10.0.0.7-8080" is the key
// "payments.10=0=0=7-8080", on the subject
// "$KV.roster.payments.10=0=0=7-8080".
//
// New creates the bucket if absent: history 1, file storage, per-message
// TTLs allowed and limit markers kept for DefaultMarkerTTL, so that a key
// that expires reaches watchers as a removal. An existing bucket without
// per-message TTLs, limit markers or rollups is rejected with an error
// wrapping ErrBucketSettings that names what is missing.
//
// # Liveness: a TTL per key, renewed by the process
//
// NATS key-value has no leases. Each key is written with a message TTL
// (Config.TTL, default 15 s) and the Backend renews it about every TTL/3 by
// writing it again. The key-value API's Update and Put cannot carry a TTL
// (an update through them strips it and the key never expires), so the
// Backend publishes to the key's subject itself, with the Nats-TTL header
// and Nats-Expected-Last-Subject-Sequence set to the sequence of its own
// last write: the renewal keeps the TTL and is a compare-and-set, which
// fails if anyone else has written, deleted or purged the key meanwhile.
//
// Cost: NATS renews per key, not per process as an etcd lease does. One
// instance costs 3 publishes (and 3 acknowledgements) per TTL, 0.2 per
// second at the default TTL; 1 000 instances cost 3 000 per TTL, 200 per
// second, and every watcher of a service receives each renewal of its
// instances as an update (which leaves the set unchanged and wakes no
// Watcher).
//
// A process that dies stops renewing: its keys expire one TTL after their
// last renewal, plus the server's expiry granularity (nats-server checks
// message TTLs about once a second), and watchers see them go.
//
// # Keeping instances published
//
// New connects and opens (or creates) the bucket, and reports a server
// that refuses the client (TLS, authentication) or a bucket without the
// settings roster needs. A server that cannot be reached is not an error,
// as with etcd: the Backend connects, and opens the bucket, as soon as
// NATS is up, so an application may start during an outage. Register
// writes the key (taking it over
// from another process if one holds it: the later writer owns the key)
// and returns once JetStream has stored it; during an outage it keeps
// trying until its context ends, and a new registration whose context
// ends leaves nothing behind. Each Backend subscribes to the subjects of its own keys only,
// on a connection that does not echo its own messages, so it learns at
// once when another process writes, deletes or purges one of them: a key
// removed by someone else is restored within a round trip; a key written
// by another process is left to it, and this Backend reports
// discovery.StateConflict and logs it once, then takes the key back once
// the other process removes it or stops renewing it (seen at the next
// renewal, within TTL/3 of the expiry). When NATS cannot be reached, every
// registration goes discovery.StateRetrying with the retry policy, and
// the Backend retries as soon as the connection is back rather than sleep
// out the backoff: a renewal that still matches keeps the key, a key that
// expired meanwhile is written again (discovery.StateLost, then
// registered). Deregister and Close purge the keys at once. Deregister
// during an outage waits for NATS within its context, then leaves the
// purge to the background (see Backend.Deregister); Close while cut off
// returns the keys it could not purge, which expire within the TTL.
//
// # Resolving and watching
//
// Resolve reads the service's keys with one key-value watch of
// "<service>.*" that stops once it has the current values, and one read of
// the sequence of the service's last stored write, which the watch must
// reach first: the watch's end-of-values mark counts messages, so a key
// renewed while it lists could otherwise be left out. Watchers of a
// service share one such watch that stays open, coalesced through
// backendkit.Feed; when the connection drops they report
// discovery.ErrUnavailable once, and when it is back the watch starts over
// and delivers the exact current set. Starting over re-reads the service's
// current values (one consumer per watched service per reconnection),
// where etcd's watch resumes from the revision it reached: a watch resumed
// from a sequence would miss the removals whose markers have expired
// (after DefaultMarkerTTL), and the watch's consumer does not outlive a
// server restart anyway.
//
// Sets carry a revision (discovery.RevisionResolver): the stream sequence
// of the last message on one of the service's keys that the read or the
// watch took in, renewals included, so that a client that uses both
// Resolve and Watch (package grpcresolver) never goes back to an older
// set. A bucket deleted and made again (or created anew on a server that
// lost its data) restarts its sequences, and a server restored from a
// backup goes back to older ones: the watchers report an outage
// (backendkit.Feed's Reset) before the first set of such a new history,
// so that no client compares revisions across the two. They tell it by
// the bucket's creation time, by the server's advisory of its deletion,
// and by a watch started again whose first set is older than the last.
//
// # Operators' tools
//
// The Backend implements discovery.OperatorView for tools that show and
// fix the bucket whoever registered the instances, such as the roster
// command line and its web view: the services with their instance counts,
// the instances of one service with the time left before each key
// expires (an instance's "lease" is its own key), the removal (a purge,
// which watchers see at once) of a stale entry by service and ID, and,
// for a live view of the whole bucket, FindServices and FollowRegistry
// (one watch of every key; its cost grows with the registry, so it is for
// one operator's tool, not for applications). Keys that roster did not
// write are reported as discovery.SkippedEntry rather than failing the
// listing; roster's own reserved keys (a key whose part after the service
// token holds '/') are passed over silently.
//
// # Metrics
//
// The Backend is a discovery.FactsReporter (package metrics exports it):
// whether the connection is usable, the failed attempts to write
// instances, the time before the first of its keys expires without
// another renewal, and the round trip of its last stored write.
package nats
