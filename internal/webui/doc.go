// Package webui is roster's live web view of a registry, served by
// "roster ui" and "roster dev --ui": one page listing every service with
// its instance count and each instance's ID, address, metadata and the time
// left on its lease, updated as instances come and go, with whether the
// registry can be reached right now and a filter box.
//
// Its one job is to turn a discovery.OperatorView (whichever backend
// implements it, a user's included) into an http.Handler that is safe to
// leave running:
//
//   - The page, its script and its style sheet are embedded in the binary
//     (Go's embed): no build step, no CDN, no framework.
//   - It is read-only: only GET and HEAD are served.
//   - What comes from the registry is data, never markup: the page builds
//     its DOM with textContent from a JSON event stream, and every response
//     carries a strict Content-Security-Policy (scripts from the server
//     itself only, no inline script or style).
//   - It answers only requests whose Host header names an IP address,
//     localhost, or a host it was told it is reached by (WithAllowedHosts),
//     so that a web site cannot read it through DNS rebinding.
//   - Live updates come from one hub per Handler, whatever the number of
//     browsers. A stream opens with the whole state; then it gets what
//     changed: the whole set of each service that changed, the leases
//     read again, the registry's status, at most one event of each kind
//     every 50 ms. A browser that reads slowly holds at most one pending
//     change per service and lease, a write that does not complete within
//     a bound ends its stream, and when as many streams are open as
//     allowed a new one ends the one stuck longest in a write, or else
//     the oldest (browsers reconnect), so that clients that never read
//     cannot lock browsers out.
//   - Every service's set comes from one FollowRegistry of the whole
//     registry (etcd: one watch over the prefix; NATS: one watch of the
//     bucket), whatever the number of services; the time left on leases
//     is read per lease (ReadLease: roster's etcd processes hold one lease
//     for all their instances; a NATS instance's lease is its key) while a
//     browser is connected, each at most once a second and about 100 a
//     second at most over the whole Handler, the least recently read
//     first. The page counts down from each reading; one that runs out
//     before the lease is read again shows "not read recently", never
//     "expired" (only a lease read as expired is).
//   - Each instance shows its condition as a badge (serving, not ready,
//     draining, maintenance) with its reason, and its weight and zone.
package webui
