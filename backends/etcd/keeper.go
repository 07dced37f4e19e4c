package etcd

import (
	"errors"
)

// Register, Deregister and the own-key watch record the desired state in
// b.regs.held and b.regs.tombs and poke the keeper, which runs the writer to make
// etcd match (lease.go, writer.go).

// errRemoved is the cause reported when a key of ours disappeared: someone
// deleted it, or etcd expired the lease it was under.
var errRemoved = errors.New("instance removed from etcd (deleted, or its lease expired)")

// errLeaseExpired is the cause reported when etcd no longer has the lease.
var errLeaseExpired = errors.New("lease expired or revoked")

// start launches the keeper, the own-key watch and the connection monitor
// (conn.go).
// Called with b.regs.mu held and the Backend open, so it never races with
// Close's wait.
func (b *Backend) start() {
	b.startOnce.Do(func() {
		b.wg.Add(2)
		go b.keep()
		go func() {
			defer b.wg.Done()
			b.ownKeys.run(b.ctx)
		}()
	})
	b.conn.start(b.ctx, &b.wg)
}

// poke wakes the keeper without blocking.
func (b *Backend) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
