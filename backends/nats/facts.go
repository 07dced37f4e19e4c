package nats

import (
	"time"

	"github.com/roster-sd/roster/discovery"
)

var _ discovery.FactsReporter = (*Backend)(nil)

// BackendFacts implements discovery.FactsReporter: whether the connection
// to NATS is usable, the failed attempts to write instances (in Register
// and in the keeper), and, while the Backend holds keys, the time before
// the first of them expires without another renewal (as of the writes
// NATS stored: NATS has no lease, each key has its own TTL) and the round
// trip of the last stored write, which is most often a renewal.
func (b *Backend) BackendFacts() discovery.BackendFacts {
	up, _, _ := b.conn.get()
	f := discovery.BackendFacts{Connected: up, RetryAttempts: b.retries.Load()}
	var first int64 // the soonest expiry, Unix nanoseconds
	for _, r := range b.snapshot() {
		// Not r.mu: a write holds it for up to RequestTimeout.
		if exp := r.expires.Load(); exp != 0 && (first == 0 || exp < first) {
			first = exp
		}
	}
	if first != 0 {
		f.HasLease = true
		f.LeaseRemaining = max(0, time.Until(time.Unix(0, first)))
		f.KeepAliveRTT = time.Duration(b.rtt.Load())
	}
	return f
}
