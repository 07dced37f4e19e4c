// Package webui is roster's live web view of a registry, served by
// "roster ui" and "roster dev --ui": one page listing every service with
// its instance count and each instance's ID, address, metadata and the time
// left on its lease, updated as instances come and go, with whether the
// registry can be reached right now and a filter box.
//
// Its one job is to turn a Registry (listing services, listing a service's
// instances, watching a service) into an http.Handler that is safe to leave
// running:
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
//   - On a RegistryFollower (etcd: one watch over the prefix) every
//     service's set comes from that one watch, whatever the number of
//     services; the time left on leases is read per lease (LeaseReader:
//     roster's processes hold one lease for all their instances) while a
//     browser is connected, each at most once a second and about 100 a
//     second at most over the whole Handler, the least recently read
//     first. The page counts down from each reading; one that runs out
//     before the lease is read again shows "not read recently", never
//     "expired" (only a lease read as expired is).
//   - On any other Registry, services come from its FindServices if it is
//     a ServiceFinder, else from listing them every second while a browser
//     is connected, and each is followed by a discovery.Watcher of its
//     own, at most WithMaxFollowed of them (the page says how many it
//     leaves out); the TTLs of a service's instances are read about once
//     a second while a browser is connected. A service is shown while it
//     has instances; the follower of one that has had none for a minute
//     ends.
package webui
