package etcd

import (
	"fmt"

	"github.com/roster-sd/roster/discovery"
)

// unconfirmed reports that etcd has not confirmed the lease for its TTL:
// no keep-alive answer came, so etcd may have expired the lease and the
// keys under it. Every instance that said registered says retrying from
// now on, at once: the keeper's attempt to grant the lease again may wait
// up to RequestTimeout for a connection, and may succeed without ever
// failing (etcd back meanwhile), so its failures cannot be what moves the
// status. The keep-alive calls it on its own goroutine; the keeper
// reports registered again once etcd answers.
func (k *leaseKeeper) unconfirmed() {
	cause := k.conn.explain(fmt.Errorf("lease not confirmed for %v: %w", k.cfg.TTL, errKeepAliveTimeout))
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	for _, e := range k.regs.held {
		if e.conflict || e.state != discovery.StateRegistered {
			continue
		}
		k.regs.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: 1, Err: cause})
	}
	k.log.Warn("lease not confirmed within its TTL; instances no longer reported registered",
		"node", nodeList(k.regs.held), "instances", len(k.regs.held))
}
