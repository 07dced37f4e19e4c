package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-sd/roster/discovery"
)

// writer makes etcd hold what the registrations table says: the held
// instances marked dirty, put under the live lease, and the pending
// deletes. Its mutex, mu, makes one goroutine at a time the writer: the
// keeper, or a Register that finds the Backend healthy and nobody writing,
// which then writes itself instead of handing over (writeOrPoke). One
// writer means no races between a re-registration, an update and a delete
// of the same key. It starts no goroutine. Lock order: mu, then regs.mu.
type writer struct {
	cli      *clientv3.Client
	cfg      Config
	log      hclog.Logger
	regs     *registrations
	keeper   *leaseKeeper // the live lease, our leases, poke
	restorer *restorer    // follows every key written
	conn     *connMonitor // explains a failure without a connection

	mu sync.Mutex
}

// errCallerGone cancels a write of claims when one of their callers gives
// up.
var errCallerGone = errors.New("a Register call gave up")

func newWriter(cli *clientv3.Client, cfg Config, regs *registrations, keeper *leaseKeeper,
	restorer *restorer, conn *connMonitor) *writer {
	return &writer{cli: cli, cfg: cfg, log: cfg.Logger, regs: regs, keeper: keeper, restorer: restorer, conn: conn}
}

// Batches: etcd's default limits are 128 operations per transaction
// (--max-txn-ops) and 1.5 MiB per request (--max-request-bytes). A batch
// that etcd refuses all the same (lower limits, a key the process may not
// write, no space) is split in halves, down to one key per write; one
// refused as "too many requests" is retried whole, after a backoff.
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20
	// opOverhead is what a put costs in a request beyond its key and
	// value: the operation's framing and the lease.
	opOverhead = 64
)

// errLeaseGone reports a write that found the lease gone.
var errLeaseGone = errors.New("lease not found")

// op is one write of a pass.
type op struct {
	e     *entry // a put, or nil for a delete
	path  string
	tomb  *tomb
	owner context.Context // for a claim: its caller's, which bounds it
}

func (o op) size() int {
	if o.e == nil {
		return len(o.path) + opOverhead
	}
	return len(o.path) + len(o.e.value) + opOverhead
}

// writeOrPoke writes the pending changes on the caller's goroutine when
// the Backend has a live lease and no other writer, saving the hand-over to
// the keeper; otherwise it wakes the keeper.
func (w *writer) writeOrPoke(ctx context.Context) {
	if w.mu.TryLock() {
		lease := w.keeper.current()
		if lease != 0 {
			wctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
			err := w.syncLocked(wctx, lease)
			cancel()
			w.mu.Unlock()
			if err == nil && !w.regs.pending() {
				return
			}
		} else {
			w.mu.Unlock()
		}
	}
	w.keeper.poke()
}

// sync writes to etcd, under lease, every held instance marked dirty (but
// those waiting out a refusal) and every pending delete. A claimed
// instance is put unconditionally (the later writer owns a key), bounded
// by the context of the Register that claims it, and never once that
// caller has given up; any other is put only if the key is absent (or
// holds a value of ours read before), so a key another registrar owns is
// left alone and reported as a conflict. Deletes only remove keys still under
// lease. A key that etcd refuses is retried on its own backoff; it returns
// an error only when etcd could not be asked (no connection, a timeout) or
// the lease is gone (errLeaseGone), having marked what was not written to
// be written again.
func (w *writer) sync(ctx context.Context, lease clientv3.LeaseID) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.syncLocked(ctx, lease)
}

// syncLocked is sync for a caller that holds w.mu.
func (w *writer) syncLocked(ctx context.Context, lease clientv3.LeaseID) error {
	now := time.Now()
	w.regs.mu.Lock()
	var ops []op
	for key := range w.regs.dirty {
		e := w.regs.held[key]
		if e == nil {
			delete(w.regs.dirty, key)
			continue
		}
		if e.retryAt.After(now) {
			continue
		}
		delete(w.regs.dirty, key)
		owner := e.owner()
		if owner != nil && owner.Err() != nil {
			// Its caller gave up: abandon (backend.go) withdraws it or
			// puts the previous value back. No claim for nobody.
			continue
		}
		e.tried = true
		ops = append(ops, op{e: e, path: e.path, owner: owner})
	}
	for path, t := range w.regs.tombs {
		ops = append(ops, op{path: path, tomb: t})
	}
	clear(w.regs.tombs)
	w.regs.mu.Unlock()
	slices.SortFunc(ops, func(x, y op) int { return strings.Compare(x.path, y.path) })
	var claims, rest []op
	for _, o := range ops {
		if o.owner != nil {
			claims = append(claims, o)
		} else {
			rest = append(rest, o)
		}
	}
	if err := w.writeClaims(ctx, lease, claims); err != nil {
		w.requeue(rest)
		return err
	}
	return w.write(ctx, lease, rest)
}

// writeClaims writes the claims of Register calls still waiting, bounded
// by their callers' contexts as well as ctx: a claim must not land for a
// caller that has given up (it was told nothing is left behind), least of
// all when the link comes back within ctx and the key has meanwhile gone
// to a later writer. When a caller gives up mid-request, the others go
// again on the next pass, at once.
func (w *writer) writeClaims(ctx context.Context, lease clientv3.LeaseID, ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for _, o := range ops {
		stop := context.AfterFunc(o.owner, func() { cancel(errCallerGone) })
		defer stop()
	}
	err := w.write(cctx, lease, ops)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errCallerGone) {
		// write marked what it did not write to be written again.
		w.keeper.poke()
		return nil
	}
	return err
}

// write commits ops in batches bounded by count and bytes, splitting a
// batch that etcd refuses. On an error it returns, what it has not written
// is marked to be written again.
func (w *writer) write(ctx context.Context, lease clientv3.LeaseID, ops []op) error {
	for len(ops) > 0 {
		n := batchLen(ops)
		err := w.commit(ctx, lease, ops[:n])
		switch {
		case err == nil:
		case !refusal(err):
			w.requeue(ops)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return fmt.Errorf("%w: %w", errLeaseGone, err)
			}
			return err
		case n == 1:
			w.refused(ops[0], err)
		default:
			if err := w.write(ctx, lease, ops[:n/2]); err != nil {
				w.requeue(ops[n/2:])
				return err
			}
			if err := w.write(ctx, lease, ops[n/2:n]); err != nil {
				w.requeue(ops[n:])
				return err
			}
		}
		ops = ops[n:]
	}
	return nil
}

// batchLen returns how many of ops go in the next transaction: at least
// one, at most maxTxnOps and, beyond the first, maxTxnBytes.
func batchLen(ops []op) int {
	n, bytes := 1, ops[0].size()
	for n < len(ops) && n < maxTxnOps {
		bytes += ops[n].size()
		if bytes > maxTxnBytes {
			break
		}
		n++
	}
	return n
}

// refusal reports whether etcd (or the client, for a request over its send
// limit) refused a request for what it holds, rather than failing to
// answer: a smaller request, or another key, may succeed. "Too many
// requests" is no such refusal but an overloaded etcd, for which the
// batch backs off whole: splitting it would multiply the requests.
func refusal(err error) bool {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrTooManyRequests) {
		return false
	}
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if s, ok := status.FromError(err); ok {
		code = s.Code()
	} else {
		return false
	}
	switch code {
	case codes.InvalidArgument, codes.PermissionDenied, codes.ResourceExhausted,
		codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	return false
}

// commit writes one batch in one request. Its answer's header tells the
// guard whether etcd's history went back since the process last heard
// from it.
func (w *writer) commit(ctx context.Context, lease clientv3.LeaseID, batch []op) error {
	mark := w.restorer.guard.mark()
	if len(batch) == 1 && batch[0].owner != nil {
		// The common case, a Register: a plain put is cheaper than a
		// transaction.
		resp, err := w.cli.Put(ctx, batch[0].path, batch[0].e.value, clientv3.WithLease(lease))
		if err != nil {
			return err
		}
		w.restorer.guard.checkWrite(mark, resp.Header)
		w.applied(lease, resp.Header.Revision, batch, []*etcdserverpb.ResponseOp{{}})
		return nil
	}
	txn := make([]clientv3.Op, len(batch))
	for i, o := range batch {
		switch {
		case o.tomb != nil:
			txn[i] = clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(o.path), "=", lease)},
				[]clientv3.Op{clientv3.OpDelete(o.path)}, nil)
		case o.owner != nil:
			txn[i] = clientv3.OpPut(o.path, o.e.value, clientv3.WithLease(lease))
		default:
			txn[i] = clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(o.path), "=", o.e.expect)},
				[]clientv3.Op{clientv3.OpPut(o.path, o.e.value, clientv3.WithLease(lease))},
				[]clientv3.Op{clientv3.OpGet(o.path)})
		}
	}
	resp, err := w.cli.Txn(ctx).Then(txn...).Commit()
	if err != nil {
		return err
	}
	w.restorer.guard.check(mark, resp.Header)
	w.applied(lease, resp.Header.Revision, batch, resp.Responses)
	return nil
}

// nextPass returns how long until the next write pass is due: at resumeAt
// (after a failed pass) or when the earliest refused key may be retried.
// It reports false when nothing waits.
func (w *writer) nextPass(resumeAt time.Time) (time.Duration, bool) {
	w.regs.mu.Lock()
	defer w.regs.mu.Unlock()
	var next time.Time
	found := len(w.regs.tombs) > 0
	if found {
		next = resumeAt
	}
	for key := range w.regs.dirty {
		e := w.regs.held[key]
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
	if !found {
		return 0, false
	}
	return max(0, time.Until(next)), true
}

// requeue marks the writes of a failed batch to be done again.
func (w *writer) requeue(ops []op) {
	w.regs.mu.Lock()
	defer w.regs.mu.Unlock()
	for _, o := range ops {
		switch {
		case o.tomb != nil:
			if _, back := w.regs.byPath[o.path]; back {
				finishAll(o.tomb.waiters, nil) // registered again meanwhile
			} else if t := w.regs.tombs[o.path]; t != nil {
				t.waiters = append(t.waiters, o.tomb.waiters...)
			} else {
				w.regs.tombs[o.path] = o.tomb
			}
		case w.regs.held[o.e.inst.Key()] == o.e:
			w.regs.dirty[o.e.inst.Key()] = struct{}{}
		}
	}
}

// refused records that etcd refused the write of one key, alone: the key
// waits out its own backoff, the others go on.
func (w *writer) refused(o op, cause error) {
	w.regs.mu.Lock()
	defer w.regs.mu.Unlock()
	if o.tomb != nil {
		if _, back := w.regs.byPath[o.path]; back {
			finishAll(o.tomb.waiters, nil) // registered again meanwhile
			return
		}
		w.log.Warn("etcd refused to delete an instance", "key", o.path, "error", cause)
		finishAll(o.tomb.waiters, fmt.Errorf("etcd refused to delete %s: %w", o.path, cause))
		return
	}
	e := o.e
	key := e.inst.Key()
	if w.regs.held[key] != e {
		return
	}
	if e.backoff == nil {
		e.backoff = w.cfg.Retry.Backoff()
	}
	e.refusals++
	w.regs.retries.Add(1)
	d, _ := e.backoff.Next()
	e.retryAt = time.Now().Add(d)
	w.regs.dirty[key] = struct{}{}
	w.regs.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: e.refusals, RetryIn: d, Err: cause})
	w.log.Warn("etcd refused the instance, will retry", "node", e.inst.Address, "key", e.path,
		"attempt", e.refusals, "retry_in", d, "error", cause)
}

// writeFailed reports a write pass that etcd did not answer.
func (w *writer) writeFailed(lease clientv3.LeaseID, attempt int, delay time.Duration, cause error) {
	w.regs.retries.Add(1)
	cause = w.conn.explain(cause)
	w.regs.mu.Lock()
	defer w.regs.mu.Unlock()
	n := 0
	for key := range w.regs.dirty {
		e := w.regs.held[key]
		if e == nil || e.conflict || e.refusals > 0 {
			continue
		}
		n++
		w.regs.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: attempt, RetryIn: delay, Err: cause})
	}
	w.log.Warn("failed to update instances, will retry", "lease", leaseString(lease), "instances", n,
		"attempt", attempt, "retry_in", delay, "error", cause)
}

// applied records the outcome of one committed transaction at revision
// rev.
func (w *writer) applied(lease clientv3.LeaseID, rev int64, ops []op, resps []*etcdserverpb.ResponseOp) {
	w.regs.mu.Lock()
	defer w.regs.mu.Unlock()
	again := false
	for i, o := range ops {
		if o.tomb != nil {
			finishAll(o.tomb.waiters, nil)
			continue
		}
		e := o.e
		key := e.inst.Key()
		if w.regs.held[key] != e {
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
				w.regs.dirty[key] = struct{}{}
				again = true
				continue
			}
			kv := kvs[0]
			theirs := clientv3.LeaseID(kv.Lease)
			if !w.regs.oursLocked(theirs) {
				e.rev, e.expect = rev, 0
				w.regs.conflictLocked(e, theirs)
				w.restorer.add(e.path, rev+1, kv.ModRevision) // to see it leave
				continue
			}
			if theirs != lease || string(kv.Value) != e.value {
				// Ours, under an older lease or with an older value:
				// written over, unless it changes meanwhile.
				e.expect, again = kv.ModRevision, true
				w.regs.dirty[key] = struct{}{}
				continue
			}
			changed = kv.ModRevision // ours already: the write read it
		}
		if !e.written {
			w.log.Debug("registered instance", "node", e.inst.Address, "key", e.path, "lease", leaseString(lease))
		}
		e.claim, e.expect, e.written, e.conflict, e.rev = false, 0, true, false, rev
		e.refusals, e.backoff, e.retryAt = 0, nil, time.Time{}
		if lease == w.regs.lease.live {
			// What marked the key again while this write was in flight
			// (the own-key watch reporting an older delete, or a late
			// write of ours) is older than this write, which is what etcd
			// holds now: writing again would change nothing.
			delete(w.regs.dirty, key)
		}
		w.restorer.add(e.path, rev+1, changed)
		// Also after an update in place: the status carries the instance.
		// Set before Register returns, so its caller sees it.
		w.regs.reportLocked(e, discovery.Status{State: discovery.StateRegistered})
		finishAll(e.waiters, nil)
		e.waiters = nil
	}
	if again {
		w.keeper.poke()
	}
	if w.regs.lease.live == lease {
		w.regs.logRegisteredLocked(lease)
	}
}
