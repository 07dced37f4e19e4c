package etcd

import (
	"sync/atomic"
	"time"

	"google.golang.org/grpc/connectivity"

	"github.com/roster-sd/roster/discovery"
)

var _ discovery.FactsReporter = (*Backend)(nil)

// leaseFacts records what the keeper and the keep-alive learn of the
// lease, for BackendFacts: when etcd expires it without another renewal,
// and the round trip of the last renewal. Written by the keeper's
// goroutines, read by anyone.
type leaseFacts struct {
	expires atomic.Int64 // Unix nanoseconds; 0 before the first grant
	rtt     atomic.Int64 // nanoseconds
}

// renewed records that etcd keeps the lease until expires; rtt is the
// round trip of the renewal, or 0 for a grant (which keeps the last one).
func (f *leaseFacts) renewed(expires time.Time, rtt time.Duration) {
	f.expires.Store(expires.UnixNano())
	if rtt > 0 {
		f.rtt.Store(int64(rtt))
	}
}

// BackendFacts implements discovery.FactsReporter: whether the client's
// connection to etcd is usable (gRPC's Ready, or Idle: no connection is
// needed at the moment, which is no fault), the failed attempts to grant
// the lease or write instances, and, while the Backend holds a lease, how
// long etcd keeps it without another keep-alive (as of the last answer)
// and the round trip of the last keep-alive.
func (b *Backend) BackendFacts() discovery.BackendFacts {
	state := b.cli.ActiveConnection().GetState()
	f := discovery.BackendFacts{
		Connected:     state == connectivity.Ready || state == connectivity.Idle,
		RetryAttempts: b.regs.retries.Load(),
	}
	f.HasLease = b.regs.hasLease()
	if !f.HasLease {
		return f
	}
	if exp := b.keeper.facts.expires.Load(); exp != 0 {
		f.LeaseRemaining = max(0, time.Until(time.Unix(0, exp)))
	}
	f.KeepAliveRTT = time.Duration(b.keeper.facts.rtt.Load())
	return f
}
