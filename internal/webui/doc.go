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
//   - Requests that reach it over loopback must name a loopback host, so
//     that a web site cannot read it through DNS rebinding.
//   - Live updates come from one hub per Handler, whatever the number of
//     browsers: one discovery.Watcher per service feeds it, and it sends
//     each browser the whole state as a server-sent event. A browser that
//     reads slowly holds at most one pending state (the newest; older ones
//     are dropped), a write that does not complete within a bound ends its
//     stream, and a stream's goroutine ends with its connection.
//   - The registry is read only for what watchers cannot tell. New
//     services come from the Registry's FindServices if it is a
//     ServiceFinder (the etcd backend's is one watch over the prefix), and
//     otherwise from listing the services every second while a browser is
//     connected. The time left on leases is read only while a browser is
//     connected: when an instance appears (or, for instances that appeared
//     while none was, when one connects) and again once half the time left
//     on its service's soonest lease has passed, so a renewed lease never
//     shows as running out. These reads are spaced over the whole Handler
//     by the number of instances read, so that they cost the registry the
//     TTLs of about 100 instances a second at most.
//   - A service is shown while it has instances; the follower of one that
//     has had none for a minute ends.
package webui
