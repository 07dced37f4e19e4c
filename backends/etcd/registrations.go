package etcd

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/retry"
)

// registrations is the table of what the Backend keeps published: the
// desired state that Register, Deregister and Close record, that the
// writer (writer.go) makes etcd match and that the own-key watch
// (restorer.go) checks, the status of each instance, reported on board,
// and what the keeper (lease.go) has made of the lease (leaseState).
//
// It is the single owner of that state: the other parts ask it questions
// and tell it what happened through its methods, each of which takes mu
// for the whole of its read-modify-write, so that one lock answers every
// question. mu is never held across a request to etcd. Methods named
// ...Locked expect it held and are for this file only. Lock order:
// writer.mu, then mu, then the locks of the parts called with mu held
// (keyWatch, the status board, the watch group, the connection monitor);
// keyWatch calls the restorer with no lock of its own held.
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
	// abandoned are the keys of abandoned Register calls followed after
	// their cleanup, by etcd key (followAbandonedLocked).
	abandoned map[string]*abandoned
	lease     leaseState
}

// leaseState is what the table knows of the Backend's lease: the keeper
// records it (lease.go), the writer and the own-key watch read it with the
// entries.
type leaseState struct {
	live    clientv3.LeaseID   // the live lease; 0 while (re-)establishing
	granted clientv3.LeaseID   // the newest lease granted, which Close revokes
	ours    []clientv3.LeaseID // recent leases of ours, to tell our writes from others'
	// announce asks for "registered" to be logged once every held
	// instance is written under a newly granted lease.
	announce bool
}

func newRegistrations(log hclog.Logger) *registrations {
	return &registrations{
		log:    log,
		board:  backendkit.NewStatusBoard(),
		held:   make(map[discovery.Key]*entry),
		dirty:  make(map[discovery.Key]struct{}),
		byPath: make(map[string]discovery.Key),
		tombs:  make(map[string]*tomb),

		abandoned: make(map[string]*abandoned),
	}
}

// The Backend's calls (backend.go, resolver.go, findservices.go,
// facts.go): Register, Deregister and Close, the watches and tools that
// must not start once it is closed, and its facts.

// isClosed reports whether Close has closed the table.
func (r *registrations) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// startIfOpen runs start with the table locked if it is open, and reports
// whether it was. Close closes the table before it waits for the
// Backend's goroutines, so a goroutine that start launches is one that
// Close waits for.
func (r *registrations) startIfOpen(start func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	start()
	return true
}

// hold records e, the claim of a Register that w waits for, as what to
// keep published under its key, and marks it to be written, if the table
// is open; start then runs with the table locked (see startIfOpen). It
// returns the entry e replaces, or nil when the instance is new. An update
// satisfies the calls still waiting on the earlier value, and takes over
// what is known of the key; a delete of the key still pending is moot.
func (r *registrations) hold(e *entry, w *waiter, start func()) (prev *entry, open bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false
	}
	key := e.inst.Key()
	prev = r.held[key]
	if prev != nil {
		e.waiters, e.rev, e.written, e.state = prev.waiters, prev.rev, prev.written, prev.state
		prev.waiters = nil
	} else {
		r.reportLocked(e, discovery.Status{State: discovery.StateRegistering})
	}
	e.waiters = append(e.waiters, w)
	if a := r.abandoned[e.path]; a != nil {
		// Registered again: the own-key watch goes on following the key
		// for the new entry, which a late put of the abandoned one does
		// not fool (keyChanged).
		a.timer.Stop()
		delete(r.abandoned, e.path)
	}
	if t := r.tombs[e.path]; t != nil {
		// Re-registered before the delete went out: the delete is moot.
		finishAll(t.waiters, nil)
		delete(r.tombs, e.path)
	}
	r.held[key] = e
	r.byPath[e.path] = key
	r.markDirtyLocked(e)
	start()
	return prev, true
}

// abandonment is what became of a Register's claim whose caller gave up
// (registrations.abandon).
type abandonment int

const (
	// claimSettled: the writer finished it meanwhile; its waiter holds
	// the outcome.
	claimSettled abandonment = iota
	// claimReplaced: a later Register replaced it, and owns the outcome.
	claimReplaced
	// claimUndone: it was withdrawn, or the previous value put back;
	// the keeper has work.
	claimUndone
)

// abandon undoes e, the claim that hold recorded for w and prev, whose
// caller gave up with cause, unless the writer finished it meanwhile or a
// later Register replaced it. An update reverts to prev, as a claim only
// if a Register of it still waits: otherwise only over a value of ours,
// never over another registrar's (the later writer keeps the key). A new
// instance is withdrawn, stops being followed in keys and, if a write of
// it went out, its key is to be deleted: cleanup, then, is finished once
// it is. etcd may still apply that write after the delete (its request
// was sent; the caller's giving up does not recall it), so the key is
// followed again from the delete on, for follow (the write's
// RequestTimeout), and a put of ours that lands is deleted.
func (r *registrations) abandon(e *entry, w *waiter, prev *entry, cause error, keys followedKeys,
	follow time.Duration) (what abandonment, cleanup *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-w.done: // the writer finished just now
		return claimSettled, nil
	default:
	}
	key := e.inst.Key()
	e.waiters = removeWaiter(e.waiters, w)
	if r.held[key] != e {
		return claimReplaced, nil
	}
	if prev != nil {
		prev.waiters, prev.expect = e.waiters, 0
		e.waiters = nil
		r.held[key] = prev
		r.markDirtyLocked(prev)
		return claimUndone, nil
	}
	r.dropLocked(key, e, keys)
	finishAll(e.waiters, fmt.Errorf("etcd: register %v: %w", key, cause))
	e.waiters = nil
	if e.tried {
		// A write of it went out: delete it.
		cleanup = newWaiter()
		r.tombs[e.path] = &tomb{waiters: []*waiter{cleanup}, follow: follow}
	}
	return claimUndone, cleanup
}

// deregister stops keeping the instance under key published, and records
// the delete of its key, which finishes w. It returns discovery.ErrClosed
// once the table is closed, and discovery.ErrNotRegistered when it holds
// no such instance.
func (r *registrations) deregister(key discovery.Key, w *waiter, keys followedKeys) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return discovery.ErrClosed
	}
	e := r.held[key]
	if e == nil {
		return discovery.ErrNotRegistered
	}
	r.dropLocked(key, e, keys)
	finishAll(e.waiters, fmt.Errorf("etcd: register %v: deregistered meanwhile: %w", key, discovery.ErrNotRegistered))
	e.waiters = nil
	r.tombs[e.path] = &tomb{waiters: []*waiter{w}}
	return nil
}

// dropLocked stops keeping e, held under key, published, and following
// its key in keys: it is deregistered.
func (r *registrations) dropLocked(key discovery.Key, e *entry, keys followedKeys) {
	delete(r.held, key)
	delete(r.dirty, key)
	delete(r.byPath, e.path)
	keys.remove(e.path)
	r.reportLocked(e, discovery.Status{State: discovery.StateDeregistered})
}

// shut closes the table, so that Register, Deregister and Watch refuse,
// and stops keeping anything published. It returns what was held, for
// Close to finish (finishClosed), and the lease granted last, for Close
// to revoke; 0 if none.
func (r *registrations) shut() (held map[discovery.Key]*entry, lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, a := range r.abandoned {
		a.timer.Stop() // revoking the lease deletes what they would
	}
	clear(r.abandoned)
	held = r.held
	r.held = map[discovery.Key]*entry{}
	clear(r.byPath)
	clear(r.dirty)
	return held, r.lease.granted
}

// takeTombs takes the deletes still pending, for Close to finish once it
// has revoked the lease.
func (r *registrations) takeTombs() map[string]*tomb {
	r.mu.Lock()
	defer r.mu.Unlock()
	tombs := r.tombs
	r.tombs = map[string]*tomb{}
	return tombs
}

// finishClosed finishes the Register calls still waiting on held, what
// shut returned, with err, and reports those instances deregistered.
func (r *registrations) finishClosed(held map[discovery.Key]*entry, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range held {
		finishAll(e.waiters, err)
		r.reportLocked(e, discovery.Status{State: discovery.StateDeregistered})
	}
}

// hasLease reports whether the Backend, open, holds a lease granted to it
// (the live one, or one being re-established), for BackendFacts.
func (r *registrations) hasLease() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease.granted != 0 && !r.closed
}

// The keeper's (lease.go, confirm.go): what it makes of the lease, and
// what that means for the instances.

// liveLease returns the live lease, or 0 while there is none.
func (r *registrations) liveLease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease.live
}

// instanceCount returns how many instances the Backend holds.
func (r *registrations) instanceCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// needsLease reports whether the Backend holds instances, which need a
// lease, or keys to delete that etcd may still hold under prev, the last
// lease: after a keep-alive that timed out, etcd may have it still (it
// keeps leases through a restart), and the keeper's establish finds out.
// Without a lease, pending deletes are moot: the keys went with the lease
// they were under, and the deletes are finished.
func (r *registrations) needsLease(prev clientv3.LeaseID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.held) > 0 || (prev != 0 && len(r.tombs) > 0) {
		return true
	}
	r.finishTombsLocked()
	return false
}

// finishTombsLocked tells the pending deletes that their keys are gone
// with the lease they were under.
func (r *registrations) finishTombsLocked() {
	for _, t := range r.tombs {
		finishAll(t.waiters, nil)
	}
	clear(r.tombs)
}

// writtenPaths returns the keys of the instances written before an
// outage, those leaseKept checks: not being written, not owned by another
// registrar.
func (r *registrations) writtenPaths() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var paths []string
	for key, e := range r.held {
		if _, dirty := r.dirty[key]; dirty || e.conflict || !e.written {
			continue
		}
		paths = append(paths, e.path)
	}
	return paths
}

// leaseKept records that etcd still had the lease after an outage: it is
// live again, and the held instances whose keys were read are checked
// against there, those of them etcd holds under it, with their values
// (checkLocked).
func (r *registrations) leaseKept(lease clientv3.LeaseID, read map[string]bool, there map[string][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lease.live, r.lease.announce = lease, true
	r.checkLocked(read, there)
	r.logRegisteredLocked(lease)
}

// leaseGranted records a lease granted anew, empty: it is live and ours,
// the keys still to delete went with the lease before it, and every held
// instance is to be written under it.
func (r *registrations) leaseGranted(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lease.live, r.lease.announce = lease, true
	r.finishTombsLocked()
	r.lease.granted = lease
	if !slices.Contains(r.lease.ours, lease) {
		r.lease.ours = append(r.lease.ours, lease)
	}
	if len(r.lease.ours) > 8 {
		r.lease.ours = slices.Delete(r.lease.ours, 0, len(r.lease.ours)-8)
	}
	for key := range r.held {
		r.dirty[key] = struct{}{}
	}
}

// checkLocked compares the held instances whose keys were read with
// there, those of them etcd holds under the lease that survived an outage,
// with their values: an instance written before and still there as
// written is registered; one missing, or there with an older value (an
// etcd restored from a backup older than its write, or than its last
// update), is written again, and reported lost if missing. Instances being
// written, those another registrar owns, and those written after the read
// are left to the writer and the own-key watch.
func (r *registrations) checkLocked(read map[string]bool, there map[string][]byte) {
	for key, e := range r.held {
		if _, dirty := r.dirty[key]; dirty || e.conflict || !e.written || !read[e.path] {
			continue
		}
		v, ok := there[e.path]
		if ok && string(v) == e.value {
			if e.state != discovery.StateRegistered {
				r.reportLocked(e, discovery.Status{State: discovery.StateRegistered})
			}
			continue
		}
		e.written = false
		if ok {
			// Still registered, saying what it said before.
			r.log.Warn("instance in etcd with an older value, writing it again", "node", e.inst.Address, "key", e.path)
		} else {
			r.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: errRemoved})
			r.log.Warn("instance missing from etcd under the lease it kept, restoring", "node", e.inst.Address, "key", e.path)
		}
		r.dirty[key] = struct{}{}
	}
}

// leaseRetrying reports a failed attempt to grant a lease: every held
// instance but those another registrar owns is retrying.
func (r *registrations) leaseRetrying(f retry.Failure) {
	r.retries.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.held {
		if e.conflict {
			continue // still the last thing known of it
		}
		r.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: f.Attempt, RetryIn: f.Delay, Err: f.Err})
	}
	r.log.Warn("failed to maintain lease, retrying", "node", nodeList(r.held), "instances", len(r.held),
		"attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
}

// leaseInDoubt records that the live lease may be gone (its keep-alive
// failed, or a write found it gone): it is offered to writers no more
// until the keeper has established it again.
func (r *registrations) leaseInDoubt() {
	r.mu.Lock()
	r.lease.live = 0
	r.mu.Unlock()
}

// leaseLost records that etcd no longer has the lease, nor the instances
// written under it.
func (r *registrations) leaseLost(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lease.live = 0
	for _, e := range r.held {
		if e.written && !e.conflict {
			e.written = false
			r.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: cause})
		}
	}
}

// idle reports whether nothing is left to keep published; the lease is then
// no longer offered to writers.
func (r *registrations) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.held) > 0 || len(r.tombs) > 0 || len(r.dirty) > 0 {
		return false
	}
	r.lease.live = 0
	return true
}

// revoked records that lease, idle, was revoked: Close has no lease to
// revoke unless another is granted.
func (r *registrations) revoked(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease.granted == lease {
		r.lease.granted = 0
	}
}

// unconfirmed records that etcd has not confirmed the lease for its TTL
// (leaseKeeper.unconfirmed): every instance that said registered says
// retrying, with cause, and is marked unconfirmed.
func (r *registrations) unconfirmed(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.held {
		if e.conflict || e.state != discovery.StateRegistered {
			continue
		}
		r.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: 1, Err: cause})
		e.unconfirmed = true
	}
	r.log.Warn("lease not confirmed within its TTL; instances no longer reported registered",
		"node", nodeList(r.held), "instances", len(r.held))
}

// confirmed records that a late keep-alive answer confirmed the lease
// (leaseKeeper.confirmed): every instance that unconfirmed moved to
// retrying, and that nothing has reported on since, is registered again.
func (r *registrations) confirmed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for key, e := range r.held {
		if !e.unconfirmed {
			continue
		}
		e.unconfirmed = false
		if _, dirty := r.dirty[key]; dirty || e.conflict || !e.written || e.state != discovery.StateRetrying {
			continue
		}
		r.reportLocked(e, discovery.Status{State: discovery.StateRegistered})
		n++
	}
	if n > 0 {
		r.log.Info("lease confirmed by a late keep-alive answer; instances registered again", "node", nodeList(r.held), "instances", n)
	}
}

// logRegistered logs, once per new lease, that the instances are
// registered under it.
func (r *registrations) logRegistered(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logRegisteredLocked(lease)
}

// logRegisteredLocked is logRegistered for a caller that holds mu: the
// one that reports the last instance registered, so that the log line is
// written before anyone sees the state.
func (r *registrations) logRegisteredLocked(lease clientv3.LeaseID) {
	if !r.lease.announce {
		return
	}
	for key := range r.dirty {
		if e := r.held[key]; e != nil && e.refusals == 0 {
			return // not all written yet
		}
	}
	for _, e := range r.held {
		if e.state != discovery.StateRegistered && !e.conflict && e.refusals == 0 {
			return // being written, in a later batch of this pass
		}
	}
	r.lease.announce = false
	registered := make(map[discovery.Key]*entry, len(r.held))
	conflicts, refused := 0, 0
	for key, e := range r.held {
		switch {
		case e.state == discovery.StateRegistered:
			registered[key] = e
		case e.conflict:
			conflicts++
		default:
			refused++
		}
	}
	args := []any{"node", nodeList(registered), "instances", len(registered), "lease", leaseString(lease)}
	if conflicts > 0 {
		args = append(args, "conflicts", conflicts)
	}
	if refused > 0 {
		args = append(args, "pending", refused)
	}
	r.log.Info("registered", args...)
}

// The writer's (writer.go): what to write in a pass, and what became of
// it.

// followedKeys is the set of keys the own-key watch follows (the
// restorer's keyWatch). The table adds each key a write put there and
// removes each instance it drops, with mu held, so that the set and the
// table agree.
type followedKeys interface {
	// add follows path from revision rev on; changed is the mod revision
	// of the key's newest change as of rev.
	add(path string, rev, changed int64)
	// remove stops following path.
	remove(path string)
}

// pending reports whether writes are waiting.
func (r *registrations) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirty) > 0 || len(r.tombs) > 0
}

// takeWrites takes the writes of a pass: every held instance marked dirty
// (but those waiting out a refusal at now, which stay marked) and every
// pending delete. A claim whose caller gave up is left out, unmarked:
// abandon (backend.go) withdraws it or puts the previous value back. No
// claim for nobody. Every put taken is marked tried.
func (r *registrations) takeWrites(now time.Time) []op {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []op
	for key := range r.dirty {
		e := r.held[key]
		if e == nil {
			delete(r.dirty, key)
			continue
		}
		if e.retryAt.After(now) {
			continue
		}
		delete(r.dirty, key)
		owner := e.owner()
		if owner != nil && owner.Err() != nil {
			continue // its caller gave up
		}
		e.tried = true
		ops = append(ops, op{e: e, path: e.path, owner: owner})
	}
	for path, t := range r.tombs {
		ops = append(ops, op{path: path, tomb: t})
	}
	clear(r.tombs)
	return ops
}

// nextWrite returns when the next write pass is due: at resumeAt (after a
// failed pass) or when the earliest refused key may be retried. It
// reports false when nothing waits.
func (r *registrations) nextWrite(resumeAt time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next time.Time
	found := len(r.tombs) > 0
	if found {
		next = resumeAt
	}
	for key := range r.dirty {
		e := r.held[key]
		if e == nil {
			continue
		}
		at := e.retryAt
		if at.Before(resumeAt) {
			at = resumeAt
		}
		if !found || at.Before(next) {
			next, found = at, true
		}
	}
	return next, found
}

// requeue marks the writes of a failed batch to be done again.
func (r *registrations) requeue(ops []op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range ops {
		switch {
		case o.tomb != nil:
			if _, back := r.byPath[o.path]; back {
				finishAll(o.tomb.waiters, nil) // registered again meanwhile
			} else if t := r.tombs[o.path]; t != nil {
				t.waiters = append(t.waiters, o.tomb.waiters...)
			} else {
				r.tombs[o.path] = o.tomb
			}
		case r.held[o.e.inst.Key()] == o.e:
			r.dirty[o.e.inst.Key()] = struct{}{}
		}
	}
}

// refused records that etcd refused the write of one key, alone: the key
// waits out its own backoff, built from policy, while the others go on.
func (r *registrations) refused(o op, cause error, policy retry.Policy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o.tomb != nil {
		if _, back := r.byPath[o.path]; back {
			finishAll(o.tomb.waiters, nil) // registered again meanwhile
			return
		}
		r.log.Warn("etcd refused to delete an instance", "key", o.path, "error", cause)
		finishAll(o.tomb.waiters, fmt.Errorf("etcd refused to delete %s: %w", o.path, cause))
		return
	}
	e := o.e
	key := e.inst.Key()
	if r.held[key] != e {
		return
	}
	if e.backoff == nil {
		e.backoff = policy.Backoff()
	}
	e.refusals++
	r.retries.Add(1)
	d, _ := e.backoff.Next()
	e.retryAt = time.Now().Add(d)
	r.dirty[key] = struct{}{}
	r.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: e.refusals, RetryIn: d, Err: cause})
	r.log.Warn("etcd refused the instance, will retry", "node", e.inst.Address, "key", e.path,
		"attempt", e.refusals, "retry_in", d, "error", cause)
}

// writeFailed reports a write pass under lease that etcd did not answer:
// every instance waiting to be written, but those another registrar owns
// and those waiting out a refusal, is retrying.
func (r *registrations) writeFailed(lease clientv3.LeaseID, attempt int, delay time.Duration, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for key := range r.dirty {
		e := r.held[key]
		if e == nil || e.conflict || e.refusals > 0 {
			continue
		}
		n++
		r.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: attempt, RetryIn: delay, Err: cause})
	}
	r.log.Warn("failed to update instances, will retry", "lease", leaseString(lease), "instances", n,
		"attempt", attempt, "retry_in", delay, "error", cause)
}

// applied records the outcome of one transaction under lease, committed at
// revision rev: resps answers ops, one for one. Each key written is
// followed in keys from then on. It reports whether keys are to be written
// again at once (deleted meanwhile, or ours with an older value), for
// which the keeper is to be woken.
func (r *registrations) applied(lease clientv3.LeaseID, rev int64, ops []op, resps []*etcdserverpb.ResponseOp,
	keys followedKeys) (again bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range ops {
		if o.tomb != nil {
			finishAll(o.tomb.waiters, nil)
			if _, back := r.byPath[o.path]; o.tomb.follow > 0 && !back && !r.closed {
				r.followAbandonedLocked(o.path, rev, o.tomb.follow, keys)
			}
			continue
		}
		e := o.e
		key := e.inst.Key()
		if r.held[key] != e {
			// Replaced or withdrawn meanwhile: a newer entry or a tomb
			// takes care of the key.
			continue
		}
		if rev < e.rev {
			// The own-key watch has seen a later change (a delete, or
			// another registrar's put): that is what etcd holds now, and
			// what the state says. The write itself was durable.
			finishAll(e.waiters, nil)
			e.waiters = nil
			continue
		}
		changed := rev // the key's newest change: this write
		if txn := resps[i].GetResponseTxn(); txn != nil && !txn.Succeeded {
			// The key exists: ours, or another registrar's.
			kvs := txn.Responses[0].GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				e.expect = 0 // deleted meanwhile: put it if absent
				r.dirty[key] = struct{}{}
				again = true
				continue
			}
			kv := kvs[0]
			theirs := clientv3.LeaseID(kv.Lease)
			if !r.oursLocked(theirs) {
				e.rev, e.expect = rev, 0
				r.conflictLocked(e, theirs)
				keys.add(e.path, rev+1, kv.ModRevision) // to see it leave
				continue
			}
			if theirs != lease || string(kv.Value) != e.value {
				// Ours, under an older lease or with an older value:
				// written over, unless it changes meanwhile.
				e.expect, again = kv.ModRevision, true
				r.dirty[key] = struct{}{}
				continue
			}
			changed = kv.ModRevision // ours already: the write read it
		}
		if !e.written {
			r.log.Debug("registered instance", "node", e.inst.Address, "key", e.path, "lease", leaseString(lease))
		}
		e.claim, e.expect, e.written, e.conflict, e.rev = false, 0, true, false, rev
		e.refusals, e.backoff, e.retryAt = 0, nil, time.Time{}
		if lease == r.lease.live {
			// What marked the key again while this write was in flight
			// (the own-key watch reporting an older delete, or a late
			// write of ours) is older than this write, which is what etcd
			// holds now: writing again would change nothing.
			delete(r.dirty, key)
		}
		keys.add(e.path, rev+1, changed)
		// Also after an update in place: the status carries the instance.
		// Set before Register returns, so its caller sees it.
		r.reportLocked(e, discovery.Status{State: discovery.StateRegistered})
		finishAll(e.waiters, nil)
		e.waiters = nil
	}
	if r.lease.live == lease {
		r.logRegisteredLocked(lease)
	}
	return again
}

// followAbandonedLocked follows path, the key of an abandoned Register
// whose cleanup delete etcd applied at revision rev, in keys from rev+1
// on, for d: the Register's put, sent before it gave up, may land after
// the delete, and then keyChanged deletes it. A put that does not land
// within d, the write's RequestTimeout, is taken never to land. One
// watcher per abandoned key, for d: the cost stays the process's own.
func (r *registrations) followAbandonedLocked(path string, rev int64, d time.Duration, keys followedKeys) {
	if a := r.abandoned[path]; a != nil {
		a.timer.Stop()
	}
	a := &abandoned{}
	r.abandoned[path] = a
	keys.add(path, rev+1, 0)
	a.timer = time.AfterFunc(d, func() { r.unfollowAbandoned(path, a, keys) })
}

// unfollowAbandoned stops following path, the key of an abandoned
// Register followed as a, once its time is up, unless the key has been
// registered again meanwhile.
func (r *registrations) unfollowAbandoned(path string, a *abandoned, keys followedKeys) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandoned[path] != a {
		return
	}
	delete(r.abandoned, path)
	if _, held := r.byPath[path]; !held {
		keys.remove(path)
	}
}

// The restorer's (restorer.go): what the own-key watch saw.

// keyChanged records a change of one of the Backend's keys that the
// own-key watch saw (restorer.observe): a delete by someone else, or by
// etcd's lease expiry, marks the instance to be written again and, if it
// was there, lost; a put by another registrar is a conflict; an older
// write of ours that landed late, with another value, is to be written
// over; a put of ours of the key of an abandoned Register, which landed
// after its cleanup delete, is deleted. It reports whether the keeper is
// to be woken.
func (r *registrations) keyChanged(ev *mvccpb.Event) (wake bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	path := string(ev.Kv.Key)
	key, ok := r.byPath[path]
	if !ok {
		lease := clientv3.LeaseID(ev.Kv.Lease)
		if r.abandoned[path] == nil || ev.Type != mvccpb.PUT || !r.oursLocked(lease) {
			return false // no longer held
		}
		// Nobody holds the instance: this put, and only it, goes.
		r.log.Warn("a write of an abandoned Register landed after its cleanup, deleting it",
			"key", path, "lease", leaseString(lease), "revision", ev.Kv.ModRevision)
		r.tombs[path] = &tomb{lease: lease, modRev: ev.Kv.ModRevision}
		return true
	}
	e := r.held[key]
	if ev.Kv.ModRevision <= e.rev {
		return false // an echo of our own write, or older
	}
	switch ev.Type {
	case mvccpb.DELETE:
		e.rev = ev.Kv.ModRevision
		r.dirty[key] = struct{}{}
		if e.written && !e.conflict {
			e.written = false
			r.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: errRemoved})
			r.log.Warn("instance removed from etcd, restoring", "node", e.inst.Address, "key", e.path)
		}
		return true
	case mvccpb.PUT:
		lease := clientv3.LeaseID(ev.Kv.Lease)
		if r.oursLocked(lease) {
			if string(ev.Kv.Value) != e.value {
				r.dirty[key] = struct{}{}
				return true
			}
			return false
		}
		e.rev = ev.Kv.ModRevision
		r.conflictLocked(e, lease)
	}
	return false
}

// recheck marks the instance whose key is path, if still held, to be
// checked by the writer: put again if absent; the key of an abandoned
// Register still followed is deleted if under the lease. It reports
// whether it did, and the keeper is to be woken.
func (r *registrations) recheck(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	key, ok := r.byPath[path]
	if ok {
		r.dirty[key] = struct{}{}
		return true
	}
	if r.abandoned[path] != nil {
		// The key of an abandoned Register, whose late put may be among
		// the changes compacted away: delete it if under the lease.
		r.tombs[path] = &tomb{}
		return true
	}
	return false
}

// rewound records that etcd's history went back to revision rev: every
// held instance is to be checked by the writer, and what its entry knew
// of later revisions belongs to a history that is gone.
func (r *registrations) rewound(rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, e := range r.held {
		e.rev = min(e.rev, rev)
		e.expect = 0 // a revision of the old history: put if absent, else read
		r.dirty[key] = struct{}{}
	}
}

// Shared by the methods above, with mu held.

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

// oursLocked reports whether lease is one of the Backend's recent leases,
// so that a key under it holds a write of ours.
func (r *registrations) oursLocked(lease clientv3.LeaseID) bool {
	return slices.Contains(r.lease.ours, lease)
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
