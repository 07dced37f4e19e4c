package metrics

import (
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
)

// Option configures a Collector made by New.
type Option func(*options)

type options struct {
	facts    discovery.FactsReporter
	factsSet bool
	cache    *cache.Resolver
}

// WithFacts sets where the backend metrics (roster_backend_*,
// roster_lease_*) come from. By default they come from the
// StatusReporter given to New if it also implements
// discovery.FactsReporter, as roster's backends do; WithFacts(nil) turns
// them off.
func WithFacts(f discovery.FactsReporter) Option {
	return func(o *options) { o.facts, o.factsSet = f, true }
}

// WithCache exports the staleness of every service that c follows
// (roster_cache_*), read at each scrape with c.Snapshot. A Collector
// follows one cache; a later WithCache replaces an earlier one.
func WithCache(c *cache.Resolver) Option {
	return func(o *options) { o.cache = c }
}
