package discovery

import "time"

// FactsReporter is implemented by backends that can say more about their
// link to the registry than the state of each registration (each of
// roster's three backends does). It is optional: metrics and status pages built on
// StatusReporter work without it, and show these facts when a backend has
// them. The types are plain Go so that a backend implementing it imports
// no metrics library.
type FactsReporter interface {
	// BackendFacts returns the backend's facts at this moment. It is cheap
	// (no request to the registry) and safe for concurrent use.
	BackendFacts() BackendFacts
}

// BackendFacts describes a backend's link to its registry at one moment.
type BackendFacts struct {
	// Connected reports whether the backend has a usable connection to its
	// registry (for an in-process registry: whether it is available).
	Connected bool

	// RetryAttempts counts the failed attempts to keep this backend's
	// registrations published since the backend was created: each one is
	// followed by a retry after a delay of the backend's retry policy. It
	// only grows.
	RetryAttempts uint64

	// HasLease reports whether the backend's registrations hang on a
	// lease (or a per-key TTL) that it renews, and it holds one at the
	// moment, live or being re-established. LeaseRemaining and
	// KeepAliveRTT are meaningful only when it is true.
	HasLease bool

	// LeaseRemaining is how long the registry keeps the lease without
	// another renewal, as of the last renewal the registry answered; zero
	// once that time has passed.
	LeaseRemaining time.Duration

	// KeepAliveRTT is the round trip of the last renewal the registry
	// answered; zero before the first one.
	KeepAliveRTT time.Duration
}
