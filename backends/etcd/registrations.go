package etcd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/retry"
)

// registrations is the table of what the Backend keeps published: the
// desired state that Register, Deregister and Close record, that the
// writer (writer.go) makes etcd match and that the own-key watch
// (restorer.go) checks, and the status of each instance, reported on board.
//
// One mutex, mu, guards the table and, so that one lock answers every
// question the writer and the restorer ask, the lease fields they read
// with it (leaseKeeper's lease, granted, ours and announce). It is never
// held across a request to etcd. Methods named ...Locked expect it held;
// the others take it. Lock order: writer.mu, then mu, then the locks of
// the parts called with mu held (keyWatch, the status board, the watch
// group); keyWatch calls the restorer with no lock of its own held.
type registrations struct {
	log   hclog.Logger
	board *backendkit.StatusBoard
	// retries counts failed attempts to keep instances published, for
	// BackendFacts.
	retries atomic.Uint64

	mu     sync.Mutex
	closed bool                       // set by Close: Register, Deregister and Watch refuse
	held   map[discovery.Key]*entry   // what the Backend keeps published
	dirty  map[discovery.Key]struct{} // held keys the writer must (re)write
	byPath map[string]discovery.Key   // etcd key -> held key
	tombs  map[string]*tomb           // keys to delete, by etcd key
}

func newRegistrations(log hclog.Logger) *registrations {
	return &registrations{
		log:    log,
		board:  backendkit.NewStatusBoard(),
		held:   make(map[discovery.Key]*entry),
		dirty:  make(map[discovery.Key]struct{}),
		byPath: make(map[string]discovery.Key),
		tombs:  make(map[string]*tomb),
	}
}

// markDirtyLocked asks the writer to write e on its next pass.
func (r *registrations) markDirtyLocked(e *entry) {
	r.dirty[e.inst.Key()] = struct{}{}
}

// reportLocked records e's new state on the status board.
func (r *registrations) reportLocked(e *entry, st discovery.Status) {
	st.Instance = e.inst
	e.state = st.State
	e.unconfirmed = false
	r.board.Set(st)
}

// conflictLocked records that another registrar owns e's key.
func (r *registrations) conflictLocked(e *entry, theirs clientv3.LeaseID) {
	e.written, e.conflict = false, true
	if e.state == discovery.StateConflict {
		return
	}
	err := fmt.Errorf("%w: key %s is under lease %s", discovery.ErrConflict, e.path, leaseString(theirs))
	r.reportLocked(e, discovery.Status{State: discovery.StateConflict, Err: err})
	r.log.Error("instance registered by another process; waiting for it to leave",
		"node", e.inst.Address, "key", e.path, "their_lease", leaseString(theirs))
}

// heldCount returns how many instances the Backend holds.
func (r *registrations) heldCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// pending reports whether writes are waiting.
func (r *registrations) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirty) > 0 || len(r.tombs) > 0
}

// nodeList names the held instances' addresses for logs: all of them up to
// three, then a count.
func nodeList(held map[discovery.Key]*entry) string {
	addrs := make([]string, 0, len(held))
	for _, e := range held {
		addrs = append(addrs, e.inst.Address)
	}
	slices.Sort(addrs)
	if len(addrs) > 3 {
		return fmt.Sprintf("%s and %d more", strings.Join(addrs[:3], ", "), len(addrs)-3)
	}
	return strings.Join(addrs, ", ")
}

// entry is one instance this backend keeps published: the desired state.
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
