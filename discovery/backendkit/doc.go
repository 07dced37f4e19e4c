// Package backendkit holds the building blocks that backend authors share,
// so that every backend gives applications the same behaviour: the
// coalescing snapshot Feed that serves a service's discovery.Watchers, the
// FeedGroup that keeps one Feed per watched service shared by all its
// watchers, and the StatusBoard that records the state of registrations and
// implements discovery.StatusReporter.
//
// Applications do not need this package: they use the contracts in package
// discovery. A backend implements discovery.Backend on top of its registry
// and uses these types for the parts that do not depend on the registry; see
// backends/memory for the reference use and package discoverytest for the
// suite that checks the result.
package backendkit
