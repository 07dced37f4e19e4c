package etcd

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// entry is one instance this backend keeps published: the desired state.
// inst, path and value are set when it is made and never change; the other
// fields belong to the registration table (registrations.go), whose
// methods read and write them with its lock held.
type entry struct {
	inst  discovery.Instance
	path  string // etcd key
	value string // JSON

	// claim asks the writer for an unconditional put: Register is an
	// explicit claim, and the later writer owns the key. Only a claim
	// whose caller still waits is made (see owner). Without it the writer
	// puts the key only if its mod revision is expect: 0, absent, or a
	// value of ours it read, so that it never takes the key from another
	// registrar.
	claim  bool
	expect int64
	// tried: a write of it was sent, so etcd may hold it even if the
	// write seemed to fail.
	tried bool
	// rev is the latest revision of the key this Backend knows of: its
	// own last write, or a change by someone else that the own-key watch
	// reported. Events and write results at or before it are old news.
	rev      int64
	written  bool // the registry held it as of rev
	conflict bool // another registrar owns the key
	state    discovery.State
	// unconfirmed: the keep-alive's timeout, nothing else, moved it from
	// registered to retrying; a late answer on the same stream may move
	// it back (leaseKeeper.confirmed). Any other report clears it.
	unconfirmed bool
	waiters     []*waiter

	// A write that etcd refused for this key alone (too large, not
	// permitted, no space) is retried on its own backoff, without holding
	// back the other keys.
	refusals int           // refused writes in a row
	backoff  retry.Backoff // nil until a write is refused
	retryAt  time.Time     // not written again before then
}

// tomb is a key the keeper must delete, if it is still under the
// Backend's lease.
type tomb struct {
	waiters []*waiter
	// lease and modRev, when set, narrow the delete to one put of ours:
	// the key under lease, at mod revision modRev (a put of an abandoned
	// Register that landed after its cleanup, registrations.keyChanged).
	lease  clientv3.LeaseID
	modRev int64
	// follow, when set, is how long the key is followed once the delete
	// is applied (registrations.followAbandonedLocked): a put of an
	// abandoned Register, already sent, may land after it.
	follow time.Duration
}

// abandoned is a key of an abandoned Register that the own-key watch
// follows after its cleanup delete, until timer fires: a put of it that
// lands meanwhile is deleted.
type abandoned struct {
	timer *time.Timer
}

// owner returns the context of the Register call that e's claim is made
// for (the newest waiting, which owns the outcome), or nil when e is no
// claim or no Register waits on it.
func (e *entry) owner() context.Context {
	if !e.claim || len(e.waiters) == 0 {
		return nil
	}
	return e.waiters[len(e.waiters)-1].ctx
}

// waiter is a Register or Deregister call waiting for the keeper.
type waiter struct {
	done chan struct{}
	err  error
	ctx  context.Context // a Register's; nil for the others
}

func newWaiter() *waiter { return &waiter{done: make(chan struct{})} }

func (w *waiter) finish(err error) {
	w.err = err
	close(w.done)
}

func finishAll(ws []*waiter, err error) {
	for _, w := range ws {
		w.finish(err)
	}
}

func removeWaiter(ws []*waiter, w *waiter) []*waiter {
	for i, x := range ws {
		if x == w {
			return append(ws[:i:i], ws[i+1:]...)
		}
	}
	return ws
}
