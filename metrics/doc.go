// Package metrics exports what roster does as Prometheus metrics, for any
// backend.
//
// A [Collector] is a prometheus.Collector built on what every backend
// already reports: it follows a discovery.StatusReporter (one status
// subscription, read by a goroutine the Collector owns until Close) and
// reads, at each scrape, the registrations' current states, the optional
// facts of a backend that implements discovery.FactsReporter (its
// connection, its retry attempts, its lease) and the staleness of a
// cache.Resolver. Resolve and Watch calls are counted by wrapping a
// discovery.Resolver with [Collector.Resolver].
//
// The Collector is registered on the application's prometheus.Registerer,
// never on the global one (unless the application passes
// prometheus.DefaultRegisterer itself):
//
//	col, err := metrics.New(backend, metrics.WithCache(cached))
//	...
//	defer col.Close()
//	reg.MustRegister(col)
//	resolver := col.Resolver(cached) // counts Resolve and Watch
//
// # Metrics
//
// Every name has the roster_ prefix; counters end in _total and durations
// are in seconds. Labels are bounded by the services of the process (the
// ones it registers, resolves or watches) and small fixed sets (states,
// causes); never by instance IDs or addresses.
//
//	roster_registrations{service,state}                       gauge: registrations held by the process, per state
//	                                                          (registering, registered, retrying, lost, conflict; 0 for the others)
//	roster_instances{service,condition}                       gauge: instances held by the process, per condition they publish
//	                                                          (serving, not_ready, draining; see discovery.Condition)
//	roster_registration_transitions_total{service,state,cause} counter: entries into retrying, lost or conflict
//	roster_registration_recovery_seconds{service}             histogram: from leaving registered to registered again
//	roster_backend_connected                                  gauge: 1 if the backend can reach its registry
//	roster_backend_retry_attempts_total                       counter: failed attempts to keep registrations published
//	roster_lease_remaining_seconds                            gauge: how long the registry keeps the lease without renewal
//	roster_lease_keepalive_rtt_seconds                        gauge: round trip of the last lease renewal
//	roster_resolve_duration_seconds{service}                  histogram: Resolve latency (its _count counts the calls)
//	roster_resolve_errors_total{service}                      counter: Resolve calls that failed
//	roster_watch_updates_total{service}                       counter: instance sets delivered by watchers' Next
//	roster_watchers{service}                                  gauge: watchers open
//	roster_cache_stale{service}                               gauge: 1 while the cache serves a set its upstream cannot confirm
//	roster_cache_age_seconds{service}                         gauge: time since the upstream last confirmed the cached set
//	roster_cache_instances{service}                           gauge: instances in the cached set
//
// The backend metrics exist only for a backend that implements
// discovery.FactsReporter, the lease metrics only while it holds a lease
// (the etcd backend) or keys with a TTL (the NATS backend: the first key
// to run out), and the cache metrics only with WithCache.
//
// The cause label of transitions is one of the values of [Cause]:
// unavailable (the registry cannot be reached), removed (the registry
// dropped the instance: lease expired, or deleted), conflict, timeout,
// canceled, or other.
//
// The transition counters and the recovery histogram are fed by the status
// subscription, which delivers the newest state of each registration: a
// registration that leaves and regains the registered state faster than
// the Collector's goroutine reads (microseconds) may be counted one
// transition short. The gauges are read from the backend at each scrape
// and are always exact.
package metrics
