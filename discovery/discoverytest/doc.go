// Package discoverytest is roster's conformance suite: the contract of
// package discovery written as tests, which every backend runs to prove
// that it keeps it. A backend that passes gets the guarantees the rest of
// roster (the gRPC resolver, the fx module, the command line) relies on, so
// its own tests only need to cover what is specific to it, such as
// reconnecting or its configuration.
//
// # Using it
//
// A backend author writes a [Harness]: a shared registry (a fresh one for
// every subtest) on which MakeBackend opens new handles, each standing for
// one process. [Run] then runs every named subtest against it:
//
//	type harness struct{ srv *myregistry.TestServer }
//
//	func (h *harness) MakeBackend(ctx context.Context) (discovery.Backend, error) {
//		return mybackend.New(ctx, mybackend.Config{Addr: h.srv.Addr()})
//	}
//
//	func (h *harness) Close() { h.srv.Stop() }
//
//	func TestConformance(t *testing.T) {
//		discoverytest.Run(t, func(ctx context.Context, t *testing.T) (discoverytest.Harness, error) {
//			srv, err := myregistry.StartTestServer(ctx)
//			if err != nil {
//				return nil, err
//			}
//			return &harness{srv: srv}, nil
//		}, discoverytest.Capabilities{Status: true, Conflict: true})
//	}
//
// A harness may also share one registry between subtests, as long as each
// harness is isolated from the others (for etcd: a key prefix of its own).
// Subtests call t.Parallel, so the HarnessMaker and Harness methods must be
// safe for concurrent use across harnesses. Every backend a subtest makes is
// closed by the subtest, before the harness is closed.
//
// [Capabilities] declares the optional parts of the contract that the
// backend implements; subtests of a missing capability are skipped, and
// a backend that claims one it does not have fails.
//
// # Subtests
//
// Run runs these subtests, each named after the rule it checks:
//
//   - Registering: RegisterThenResolveFromAnotherHandle,
//     RegisterIsIdempotent, ReregisterUpdatesMetadataInPlace,
//     RegisterCopiesTheInstance, RegisterWithCancelledContextLeavesNothing,
//     InvalidInstances (one case per kind of invalid instance; each wraps
//     discovery.ErrInvalidInstance, names the field and writes nothing),
//     EmptyIDDerivedFromAddress.
//   - Deregistering: DeregisterRemoves, DeregisterUnknownIsErrNotRegistered.
//   - Resolving: ServicesAreIsolated, ResolveSortedByID,
//     ResolveReturnsCopies, ResolveUnknownServiceIsEmpty,
//     ResolveAndWatchRejectInvalidServiceNames (an error wrapping
//     discovery.ErrInvalidInstance naming Service, not an empty set).
//   - Watching: WatchFirstNextIsCurrentSet, WatchNextAfterChange,
//     WatchCoalescesQuickChanges, WatchReturnsCopies,
//     WatchersAreIndependent, WatchStopUnblocksNext,
//     WatchContextEndUnblocksNext, WatchEndsWithItsContext,
//     WatchSeesOtherHandle.
//   - Closing: CloseDeregistersEverything, CloseStopsWatchers,
//     CallsAfterCloseAreErrClosed, CloseIsIdempotent.
//   - Concurrency: ConcurrentRegisterDeregister.
//   - Capabilities.Status: StatusTransitions,
//     StatusOfUnknownIsErrNotRegistered, StatusesListsRegistrations,
//     SubscribeStatusStartsWithCurrent.
//   - Capabilities.Conflict: ConflictLaterWriterWins,
//     ConflictEarlierWriterDeregisters.
//   - Serving fields (Condition, Reason, Weight, Zone):
//     ServingFieldsRoundTrip (each condition a process publishes, weight
//     bound and zone comes back from Resolve and Watch),
//     ConditionUpdateInPlace (changing condition, weight or zone reaches a
//     watcher as one set change, no removal in between),
//     InvalidServingFieldsWriteNothing, and with Capabilities.Values
//     ValueWithoutServingFieldsReadsAsServing (a value written before
//     these fields existed reads as serving, default weight, no zone).
//   - Faults, with Capabilities.Faults (a FaultHarness that stops,
//     starts and cuts off a registry of its own; see below):
//     FaultRestartWithinTTLKeepsTheKey, FaultDownLongerThanTTLComesBack,
//     FaultExternalDeleteIsRestored,
//     FaultSameInstanceFromTwoBackendsDoesNotFlap (with
//     Capabilities.Conflict), FaultBlackholeLongerThanTTL,
//     FaultWatchReportsOutageThenExactSet,
//     FaultCloseInAnOutageNamesWhatItLeft,
//     FaultDeregisterInAnOutageWaitsForTheRegistry,
//     FaultMaintenanceSurvivesRestart (with a discovery.Maintainer),
//     FaultFollowRegistryReportsOutage (with a discovery.OperatorView),
//     FaultWipeResetsTheWatchersRevisions (with a FaultHarness that is a
//     [Wiper], and a discovery.RevisionWatcher).
//   - Operators' maintenance overrides, for backends that implement
//     discovery.Maintainer (skipped for the others):
//     MaintenanceOverridesCondition (an override reaches a watcher as one
//     set change, shows as maintenance with the operator's reason, is
//     routed by no RoutePolicy, survives the process's own updates, and
//     clearing it restores the process's condition), MaintenanceOfWholeService,
//     MaintenanceBeforeRegistration, MaintenanceSurvivesProcessRestart,
//     MaintenanceExpires and InvalidMaintenanceWritesNothing.
//
// Run a single one with go test -run 'TestConformance/WatchNextAfterChange'.
//
// # Faults
//
// A backend's test may also supply a [FaultHarnessMaker] in
// Capabilities.Faults, as go-cloud's drivertest lets a driver supply
// optional parts of its harness. The suite then runs the fault scenarios
// once for every backend that offers one, instead of each backend
// repeating them: for each it asks for a [FaultHarness] on a registry of
// its own, with a short TTL and scaled-down retries ([FaultOptions]),
// and checks exact outcomes (the set an observer resolves, the states the
// registrar reports) by waiting on events and conditions, never on a
// fixed sleep. Each takes a few seconds: about a TTL for those that wait
// one out. A backend without one (the memory backend,
// examples/custombackend) has them skipped, saying why.
//
// # What the suite expects
//
// The suite tolerates a real, networked registry: writes may take
// milliseconds and watch events arrive asynchronously. It waits for
// conditions by polling Resolve or calling Watcher.Next, never by sleeping,
// with a deadline of [Timeout]. A few checks that nothing happens (no
// spurious change after a watcher caught up) wait a short [QuietPeriod].
//
// Beyond the method documentation in package discovery, the suite relies on
// these points of the contract:
//
//   - The writes of one handle are ordered: once a later write is visible
//     through any handle, every earlier one is too. The suite uses this to
//     check that a failed Register wrote nothing, by waiting for a
//     successful write made after it.
//   - The watchers of one service on one Resolver share what they know (as
//     they do when the backend serves them from one backendkit.Feed): once
//     one of them has returned a set, an idle one returns that same set, or
//     a newer one, on its next call.
//   - Watcher.Next may return an error wrapping discovery.ErrUnavailable
//     when the registry becomes unreachable, once per outage, and then
//     returns the set again once it is back. Outside the fault scenarios
//     the suite does not cause outages, but tolerates them: its helpers
//     that wait on Next skip such an error. (The checks that nothing happens for QuietPeriod do not: a
//     set delivered again after an outage is a change for them.)
//   - With Capabilities.Status, Status reports discovery.StateRegistered as
//     soon as Register returns, and ErrNotRegistered as soon as Deregister
//     returns.
//   - With Capabilities.Conflict, a handle whose key was taken over still
//     holds its registration: Deregister of it returns nil (and leaves the
//     other handle's instance alone), and it no longer takes the key back.
//
// Package backends/memory is the reference: it passes
// every subtest, and its TestConformance is a complete example.
package discoverytest
