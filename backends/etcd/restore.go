package etcd

import (
	"errors"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
)

// The own-key watch (keyWatch) reports every change of a key the Backend
// holds; observe decides what it means: a delete by someone else or by
// etcd's lease expiry is restored, a put by another registrar is a
// conflict, an older write of ours that landed late is written over.

// errRemoved is the cause reported when a key of ours disappeared: someone
// deleted it, or etcd expired the lease it was under.
var errRemoved = errors.New("instance removed from etcd (deleted, or its lease expired)")

// observe reacts to a change of one of the Backend's keys.
func (b *Backend) observe(ev *mvccpb.Event) {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	key, ok := b.regs.byPath[string(ev.Kv.Key)]
	if !ok {
		return // no longer held
	}
	e := b.regs.held[key]
	if ev.Kv.ModRevision <= e.rev {
		return // an echo of our own write, or older
	}
	switch ev.Type {
	case mvccpb.DELETE:
		e.rev = ev.Kv.ModRevision
		b.regs.dirty[key] = struct{}{}
		if e.written && !e.conflict {
			e.written = false
			b.regs.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: errRemoved})
			b.log.Warn("instance removed from etcd, restoring", "node", e.inst.Address, "key", e.path)
		}
		b.keeper.poke()
	case mvccpb.PUT:
		lease := clientv3.LeaseID(ev.Kv.Lease)
		if slices.Contains(b.keeper.ours, lease) {
			if string(ev.Kv.Value) != e.value {
				b.regs.dirty[key] = struct{}{}
				b.keeper.poke()
			}
			return
		}
		e.rev = ev.Kv.ModRevision
		b.regs.conflictLocked(e, lease)
	}
}

// recheck has the writer check a key whose changes were compacted away
// before the own-key watch saw them: it is put again if absent.
func (b *Backend) recheck(path string) {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	if key, ok := b.regs.byPath[path]; ok {
		b.regs.dirty[key] = struct{}{}
		b.keeper.poke()
	}
}
