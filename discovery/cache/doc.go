// Package cache serves a discovery.Resolver from memory.
//
// A [Resolver] sits in front of any discovery.Resolver (a backend, or
// another wrapper). The first Resolve or Watch of a service starts one
// background upstream Watch for it; from then on Resolve answers from the
// cached set without a round trip to the registry, and every Watch of the
// service shares that one upstream watch through a discovery.Feed.
//
// The cache is built for the moments when the registry misbehaves:
//
//   - Its per-service goroutine never gives up. When the upstream Watch or
//     Next fails it marks the service stale, retries with the backoff of a
//     retry.Policy ([WithRetry]) and resumes.
//   - With [WithStaleOnError] it keeps serving the last known set while the
//     upstream fails, for up to a maximum age; [Resolver.Snapshot] shows
//     whether the set is stale and how old it is. Without it, Resolve
//     reports the upstream's error as soon as the upstream fails.
//   - With [WithEmptyHold] a non-empty set that turns empty is only
//     published once it has stayed empty for a while, so a registry blip
//     does not tell every client that all instances left.
//
// Staleness is only as good as what the upstream reports: a backend whose
// watchers ride out outages on their own (the etcd backend resumes its
// watch internally and keeps its watchers open) never makes the cache
// stale; the cache then keeps serving the last set it was given.
//
// Close stops every upstream watch and goroutine and waits for them.
package cache
