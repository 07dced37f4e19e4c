package etcd

import (
	"cmp"
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
)

// writer makes etcd hold what the registrations table says: the held
// instances marked dirty, put under the live lease, and the pending
// deletes. The keeper owns it: makes it, runs it on the lease (sync), and
// stops it on Close (stop). Its mutex, mu, makes one goroutine at a time
// the writer: the keeper, or a Register that finds the Backend healthy and
// nobody writing, which then writes itself instead of handing over
// (writeOrPoke). One writer means no races between a re-registration, an
// update and a delete of the same key. It starts no goroutine, and knows
// of the keeper only poke. Lock order: mu, then the table's.
type writer struct {
	cli      *clientv3.Client
	cfg      Config
	log      hclog.Logger
	regs     *registrations // what to write, the live lease
	restorer *restorer      // follows every key written; its guard sees every answer
	conn     *connMonitor   // explains a failure without a connection
	// poke wakes the keeper: to write at once what a pass found to write
	// again, or what a Register left to it.
	poke func()

	mu sync.Mutex
}

// errCallerGone cancels a write of claims when one of their callers gives
// up.
var errCallerGone = errors.New("a Register call gave up")

func newWriter(cli *clientv3.Client, cfg Config, regs *registrations, restorer *restorer,
	conn *connMonitor, poke func()) *writer {
	return &writer{cli: cli, cfg: cfg, log: cfg.Logger, regs: regs, restorer: restorer, conn: conn, poke: poke}
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
		lease := w.regs.liveLease()
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
	w.poke()
}

// sync writes to etcd, under lease, every held instance marked dirty (but
// those waiting out a refusal) and every pending delete. A claimed
// instance is put unconditionally (the later writer owns a key), bounded
// by the context of the Register that claims it, and never once that
// caller has given up; any other is put only if the key is absent (or
// holds a value of ours read before), so a key another registrar owns is
// left alone and reported as a conflict. Deletes only remove keys still under
// lease (the delete of a put of an abandoned Register that landed late:
// that put alone, by its lease and mod revision). A key that etcd refuses is retried on its own backoff; it returns
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
	ops := w.regs.takeWrites(time.Now())
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
		w.poke()
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
			cmps := []clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(o.path), "=", cmp.Or(o.tomb.lease, lease))}
			if o.tomb.modRev != 0 {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(o.path), "=", o.tomb.modRev))
			}
			txn[i] = clientv3.OpTxn(cmps, []clientv3.Op{clientv3.OpDelete(o.path)}, nil)
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
	next, ok := w.regs.nextWrite(resumeAt)
	if !ok {
		return 0, false
	}
	return max(0, time.Until(next)), true
}

// requeue marks the writes of a failed batch to be done again.
func (w *writer) requeue(ops []op) { w.regs.requeue(ops) }

// refused records that etcd refused the write of one key, alone: the key
// waits out its own backoff, the others go on.
func (w *writer) refused(o op, cause error) { w.regs.refused(o, cause, w.cfg.Retry) }

// writeFailed reports a write pass that etcd did not answer.
func (w *writer) writeFailed(lease clientv3.LeaseID, attempt int, delay time.Duration, cause error) {
	w.regs.retries.Add(1)
	w.regs.writeFailed(lease, attempt, delay, w.conn.explain(cause))
}

// applied records the outcome of one committed transaction at revision
// rev; the keys written are followed by the restorer from then on.
func (w *writer) applied(lease clientv3.LeaseID, rev int64, ops []op, resps []*etcdserverpb.ResponseOp) {
	if w.regs.applied(lease, rev, ops, resps, w.restorer) {
		w.poke()
	}
}

// stop waits for a write under way on a Register's goroutine, the only
// writer left once the keeper has ended, and takes the deletes still
// pending, which Close finishes.
func (w *writer) stop() map[string]*tomb {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.regs.takeTombs()
}
