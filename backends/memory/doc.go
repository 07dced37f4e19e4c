// Package memory is an in-process discovery.Backend: the reference
// implementation of roster's contracts, for tests and single-process
// applications.
//
// A [Store] is the registry, as one etcd cluster is shared by many
// processes; each [Backend] made by [New] is one process's handle on it,
// with its own registrations, watchers and status. Several Backends on one
// Store see each other's instances, take over each other's keys (the later
// writer owns a key; the earlier one reports discovery.StateConflict and
// takes the key back once it is gone) and can be closed independently.
//
// Writes take effect before the call returns, so Resolve and Watch on any
// Backend of the Store see them at once. Sorting, defensive copies,
// coalescing watchers shared per service, and status fan-out come from
// packages discovery and backendkit (discovery.NormalizeSet,
// backendkit.Feed, backendkit.FeedGroup, backendkit.StatusBoard), exactly as
// a networked backend would use them.
//
// # Faults
//
// The Store simulates the faults a real registry has, so that code built on
// roster can be tested against them without a network:
//
//   - [Store.Expire] drops one registration, as an expired lease does.
//     Watchers see the instance leave, its owner reports
//     discovery.StateLost (cause [ErrExpired]) and, after the delay set by
//     [WithRestoreDelay], puts it back and reports
//     discovery.StateRegistered again. If another Backend was waiting for
//     the key (it reported StateConflict), that Backend takes it instead and
//     the expired owner then waits in StateConflict.
//   - [Store.SetAvailable](false) starts an outage: Register, Resolve and
//     Watch fail with an error wrapping [ErrUnavailable] (Deregister
//     waits for the Store within its context, as the discovery.Registrar
//     contract says: see [Backend.Deregister]), and
//     every Backend holding registrations reports discovery.StateRetrying
//     with Attempt counting up and RetryIn taken from its retry.Policy
//     ([WithRetry]). Registrations are kept in the Store during the outage
//     (the Store has no leases to expire; use Expire for that). Existing
//     watchers stay open: their Next returns an error wrapping
//     discovery.ErrUnavailable once, as with a lost connection, and they
//     see no changes meanwhile. SetAvailable(true) ends the outage: every
//     watcher's Next returns the current set again, even if unchanged, and
//     every Backend retries at once, without sleeping out its backoff,
//     re-publishes what it holds and reports StateRegistered (or
//     StateConflict for keys another Backend owns).
//
// Status changes are delivered through discovery.StatusSubscription,
// which coalesces per registration: a subscriber that is not waiting in
// Next when a short-lived state such as StateLost is replaced may see only
// the newer state. A restore delay of a few milliseconds makes StateLost
// observable; Backend.Status reports it synchronously right after Expire
// returns whenever the restore delay is not zero.
//
// # Goroutines
//
// A Backend starts goroutines only for delayed restores and for outage
// retries. It owns them and Close stops them before it returns.
package memory
