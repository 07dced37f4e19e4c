// Package discovery defines roster's contracts: the Instance a service
// publishes, the Registrar that keeps it published, the Resolver and Watcher
// that read the live set, the Backend that combines them, and the
// StatusReporter through which a backend reports the state of its
// registrations (State, Status, StatusSubscription).
//
// It also holds the small helpers that applications and backends share:
// validation of instances (Instance.Validate, Instance.Normalize,
// ValidateName), sorting and de-duplicating instance sets and defensive
// copies (NormalizeSet, CloneSet, EqualSets), and the sentinel errors.
//
// An Instance says, besides where it is, whether it should get new traffic:
// its Condition (serving, the zero value; not ready; draining; maintenance,
// an operator's override), a Reason, a Weight and a Zone. A registry value
// without them, written by an older roster or another tool, reads as
// serving with DefaultWeight and no zone, and an older reader ignores them.
// Clients that route pick instances with RoutePolicy (Routable): the
// serving ones, or the not-ready ones when none is serving; never draining
// or maintenance ones. An operator sets maintenance through a backend's
// optional Maintainer: an override (Maintenance) kept apart from the
// instance's own key, which the backend's readers merge into the instance
// (ApplyMaintenance).
//
// It imports nothing outside the standard library. Backends live in
// sub-trees of the module (backends/etcd, backends/nats, backends/memory)
// or in user code; the building blocks they share (the coalescing feeds
// behind watchers and the status board behind StatusReporter) are in
// package discovery/backendkit, and package discoverytest checks any
// backend against this contract.
//
// # Settings: Config structs and options
//
// roster's packages, and backends written for it, take settings in two
// ways, by where they come from:
//
//   - Settings that come from outside the program (environment variables,
//     command-line flags, an fx module's configuration) are fields of a
//     Config struct, whose zero value means the documented default, such as
//     etcd.Config and nats.Config, filled from the ROSTER_* variables by
//     their ConfigFromEnv. A backend's Config also holds the few fields of
//     the same connection that only code can fill (a *tls.Config, a
//     Logger, a retry.Policy), so that one value describes the backend.
//   - Settings only code sets (a logger, a clock, a test's scaled-down
//     timings, an optional collaborator) are functional options, WithX
//     functions over an unexported struct, such as cache.WithStaleOnError or
//     metrics.WithCache.
//
// Either way, an invalid value is an error from the constructor that names
// the setting and why, never a log line or a silent correction.
package discovery
