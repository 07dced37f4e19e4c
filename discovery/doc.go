// Package discovery defines roster's contracts: the Instance a service
// publishes, the Registrar that keeps it published, the Resolver and Watcher
// that read the live set, and the Backend that combines them.
//
// The package also holds the behaviour every backend shares, so that it is
// written once: validation of instances, sorting and de-duplicating instance
// sets, defensive copies (Clone, NormalizeSet), the coalescing snapshot feed
// that backs watchers (Feed), one feed per watched service shared by all its
// watchers (FeedGroup) and the registration state model (State, Status,
// StatusBoard).
//
// It imports nothing outside the standard library. Backends live in
// sub-trees of the module (backends/etcd, backends/memory) or in user code;
// package discoverytest checks any of them against this contract.
package discovery
