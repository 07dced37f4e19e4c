package etcd

import (
	"fmt"
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
	k.regs.unconfirmed(cause)
}

// confirmed reports that etcd answered, late, a keep-alive sent on the
// stream that was open when the TTL ran out, with the lease still alive:
// etcd never expired it (a lease is not brought back under its ID but by
// our own grant), and it was not restarted meanwhile (the stream would
// have failed), so the keys under it are what they were. Every instance
// that unconfirmed moved to retrying, and that nothing has reported on
// since, is registered again, without asking for the lease again and
// reading it (two requests, a raft proposal among them, which a loaded
// cluster answers late again).
func (k *leaseKeeper) confirmed() { k.regs.confirmed() }
