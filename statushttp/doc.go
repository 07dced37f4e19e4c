// Package statushttp serves the registrations of a process over HTTP: an
// http.Handler that a readiness or startup probe, and a human, can read.
//
// The [Handler] answers with every registration the backend holds (its
// service, ID, address, metadata, state, attempt, next retry and cause),
// and the backend's facts when it implements discovery.FactsReporter: as
// JSON when the request asks for it (?format=json, or an Accept header
// that prefers application/json), as a short HTML page for a browser
// (Accept: text/html), and as plain text otherwise (curl). The Accept
// header is read as RFC 9110 says: every format competes at the quality
// value of the most specific media range naming it. Everything that comes
// from the registry or from other processes is escaped.
//
// # The probe rule
//
// The status code is 200 when the process is ready and 503 when it is not:
//
//   - ready once every registration the process holds has been registered
//     at least once (discovery.Status.WasRegistered), and from then on
//     through every fault of the registry: retrying, lost and conflict
//     keep it ready;
//   - not ready while any registration has never been registered yet, and
//     when it holds none: before its first Register, and after Deregister
//     or Close.
//
// The condition an instance publishes (discovery.Condition: not_ready
// while its health check fails, draining while it leaves) is shown with
// its reason, but never changes the verdict: it tells roster's clients
// whether to send the instance new work, and a dependency down on every
// instance must not take the whole fleet out of its load balancers too.
//
// Why: readiness decides whether a load balancer sends traffic to the
// process, and the registry has no say in whether the process can serve
// it. A registry outage cuts every process of a fleet off at once; if that
// made them unready, an etcd blip would take every instance out of every
// load balancer, turning a control-plane hiccup into a full outage of the
// data plane. So once a process has shown that it can register (its
// configuration, credentials and network path to the registry work), a
// registry fault shows in its status page, its metrics and its alerts
// (roster_registrations, roster_registration_transitions_total), not in
// its readiness. Before that first registration it is not ready, which is
// what a startup probe needs: a process that has never registered is
// likely misconfigured, and rolling it out should stop. A conflict (another
// process took the same service and ID) keeps a process ready for the
// same reason, and because making it unready could deadlock a rollout in
// which the new replica waits for the old one to leave while the old one
// waits for the new one to be ready; it is an alert, not a probe failure.
// Deregistering (at shutdown) makes the process unready, so that load
// balancers stop sending traffic while it drains.
package statushttp
