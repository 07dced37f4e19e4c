package etcd

import (
	"errors"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// restorer is the own-key concern: its keyWatch (keywatch.go) follows
// every key the Backend holds and reports each change, from its goroutine,
// to observe, which decides what it means: a delete by someone else or by
// etcd's lease expiry is restored, a put by another registrar is a
// conflict, an older write of ours that landed late is written over
// (registrations.keyChanged). It restores by marking the key dirty in the
// table and poking the keeper, whose writer writes it. The writer has the
// table add each key it writes (add), and the table removes each instance
// it drops (remove).
type restorer struct {
	*keyWatch
	// guard notices from response headers that etcd's history went back
	// (rollback.go); the writer and the resolver side feed it too.
	guard *revisionGuard
	log   hclog.Logger
	regs  *registrations
	poke  func() // wakes the keeper
}

func newRestorer(cli *clientv3.Client, cfg Config, regs *registrations, poke func()) *restorer {
	r := &restorer{log: cfg.Logger, regs: regs, poke: poke}
	r.guard = newRevisionGuard(r.rolledBack)
	r.keyWatch = newKeyWatch(cli, cfg.Retry, cfg.Logger, r.guard, r.observe, r.recheck)
	return r
}

// errRemoved is the cause reported when a key of ours disappeared: someone
// deleted it, or etcd expired the lease it was under.
var errRemoved = backendkit.Mark(errors.New("instance removed from etcd (deleted, or its lease expired)"), discovery.ErrRemoved)

// observe reacts to a change of one of the Backend's keys (see
// registrations.keyChanged).
func (r *restorer) observe(ev *mvccpb.Event) {
	if r.regs.keyChanged(ev) {
		r.poke()
	}
}

// recheck has the writer check a key whose changes were compacted away
// before the own-key watch saw them: it is put again if absent.
func (r *restorer) recheck(path string) {
	if r.regs.recheck(path) {
		r.poke()
	}
}

// rolledBack follows etcd's history back to revision rev (a member wiped,
// or restored from a backup), as the guard saw it in a response header:
// every key is watched again from the present, and checked by the writer,
// which puts each one absent or holding an older value and reports the
// others registered (the check of a pass: one transaction per 128 keys).
// What the entries knew of later revisions belongs to a history that is
// gone, so that a write of the new one is not taken for old news.
func (r *restorer) rolledBack(rev int64) {
	r.log.Warn("etcd's history went back (wiped, or restored from a backup): checking every instance",
		"revision", rev)
	r.restartFrom(rev + 1)
	r.regs.rewound(rev)
	r.poke()
}
