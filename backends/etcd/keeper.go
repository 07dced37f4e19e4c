package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// The keeper is the only goroutine that writes the Backend's keys: Register,
// Deregister and the own-key watch record the desired state in b.held and
// b.tombs and poke it, and it makes etcd match. One writer means no races
// between a re-registration, an update and a delete of the same key.

// errRemoved is the cause reported when a key of ours disappeared: someone
// deleted it, or etcd expired the lease it was under.
var errRemoved = errors.New("instance removed from etcd (deleted, or its lease expired)")

// errLeaseExpired is the cause reported when etcd no longer has the lease.
var errLeaseExpired = errors.New("lease expired or revoked")

// start launches the keeper and the connection monitor. Called with b.mu
// held and the Backend open, so it never races with Close's wait.
func (b *Backend) start() {
	b.startOnce.Do(func() {
		b.wg.Add(1)
		go b.keep()
	})
	b.startMonitor()
}

// startMonitor launches the connection monitor, for the keeper and for the
// watches. Called with b.mu held and the Backend open.
func (b *Backend) startMonitor() {
	b.monitorOnce.Do(func() {
		b.wg.Add(1)
		go b.monitorConn()
	})
}

// poke wakes the keeper without blocking.
func (b *Backend) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// keep establishes a lease with every instance published, keeps it alive,
// and starts over whenever that fails, until Close.
func (b *Backend) keep() {
	defer b.wg.Done()
	var lease clientv3.LeaseID
	watching := false
	for {
		var rev int64
		var err error
		lease, rev, err = b.establish(lease)
		if err != nil {
			return // closed
		}
		if !watching {
			watching = true
			b.wg.Add(1)
			go b.watchOwnKeys(rev + 1)
		}
		b.serve(lease)
		b.setLease(0)
		if b.ctx.Err() != nil {
			return
		}
	}
}

// establish makes sure etcd holds a live lease of ours (keeping lease if
// etcd still has it) and every instance under it, retrying with the policy
// until it succeeds or the Backend closes. It returns the lease and the
// revision of the last write.
func (b *Backend) establish(lease clientv3.LeaseID) (clientv3.LeaseID, int64, error) {
	drain(b.connReady) // only a connection that comes up from now on is news
	var rev int64
	attempt := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
		if lease != 0 {
			resp, err := b.cli.TimeToLive(ctx, lease)
			if err != nil {
				return fmt.Errorf("check lease %s: %w", leaseString(lease), err)
			}
			if resp.TTL <= 0 {
				b.log.Warn("lease expired, granting a new one", "lease", leaseString(lease))
				b.markLost(errLeaseExpired)
				lease = 0
			}
		}
		if lease == 0 {
			resp, err := b.cli.Grant(ctx, b.ttl)
			if err != nil {
				return fmt.Errorf("grant lease: %w", err)
			}
			lease = resp.ID
			b.mu.Lock()
			b.granted = lease
			b.ours = append(b.ours, lease)
			if len(b.ours) > 8 {
				b.ours = slices.Delete(b.ours, 0, len(b.ours)-8)
			}
			b.mu.Unlock()
		}
		b.setLease(lease) // before the writes, so Register callers see it on return
		r, err := b.sync(ctx, lease, true)
		if err != nil {
			b.setLease(0)
			return fmt.Errorf("publish instances under lease %s: %w", leaseString(lease), err)
		}
		rev = r
		return nil
	}
	explained := func(ctx context.Context) error {
		err := attempt(ctx)
		if err != nil && b.cli.ActiveConnection().GetState() != connectivity.Ready {
			// Say why a request timed out: there is no connection.
			err = fmt.Errorf("no connection to etcd at %v: %w", b.cli.Endpoints(), err)
		}
		return err
	}
	err := b.cfg.Retry.Do(b.ctx, explained, retry.OnFailure(b.retrying), retry.WakeOn(b.connReady))
	if err != nil {
		return 0, 0, err
	}
	b.mu.Lock()
	n, nodes := len(b.held), nodeList(b.held)
	b.mu.Unlock()
	b.log.Info("registered", "node", nodes, "instances", n, "lease", leaseString(lease))
	return lease, rev, nil
}

func (b *Backend) setLease(lease clientv3.LeaseID) {
	b.mu.Lock()
	b.lease = lease
	b.mu.Unlock()
}

// serve keeps lease alive and applies changes until the keep-alive ends, a
// write fails, or the Backend closes.
func (b *Backend) serve(lease clientv3.LeaseID) {
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	ka, err := b.cli.KeepAlive(ctx, lease)
	if err != nil {
		b.log.Warn("failed to start keep-alive, will retry", "lease", leaseString(lease), "error", err)
		return
	}
	b.poke() // apply what arrived while establishing
	for {
		select {
		case _, ok := <-ka:
			if ok {
				continue
			}
			if b.ctx.Err() != nil {
				return
			}
			b.mu.Lock()
			n := len(b.held)
			b.mu.Unlock()
			b.log.Warn("keep-alive channel closed, will retry", "lease", leaseString(lease), "instances", n)
			return
		case <-b.kick:
			wctx, wcancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
			_, err := b.sync(wctx, lease, false)
			wcancel()
			if err != nil {
				if b.ctx.Err() != nil {
					return
				}
				b.log.Warn("failed to update instances, will retry", "lease", leaseString(lease), "error", err)
				return
			}
		case <-b.ctx.Done():
			return
		}
	}
}

// retrying reports a failed attempt to restore the registrations.
func (b *Backend) retrying(f retry.Failure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.held {
		b.board.Set(discovery.Status{
			Instance: e.inst, State: discovery.StateRetrying,
			Attempt: f.Attempt, RetryIn: f.Delay, Err: f.Err,
		})
	}
	b.log.Warn("failed to maintain lease, retrying", "node", nodeList(b.held), "instances", len(b.held),
		"attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
}

// markLost records that etcd no longer holds the instances written under
// the lease that just expired.
func (b *Backend) markLost(cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.held {
		if e.written && !e.conflict {
			e.written = false
			b.board.Set(discovery.Status{Instance: e.inst, State: discovery.StateLost, Err: cause})
		}
	}
}

// op is one write of a sync pass.
type op struct {
	e    *entry // a put, or nil for a delete
	path string
	tomb *tomb
}

// sync writes to etcd, under lease, every instance marked dirty (all of
// them when all is set) and every pending delete, in one transaction per
// maxTxnOps keys. A claimed instance is put unconditionally (the later
// writer owns a key); any other is put only if the key is absent, so a key
// another registrar owns is left alone and reported as a conflict. Deletes
// only remove keys still under lease. It returns the revision of the last
// transaction. On error, what was not written is marked dirty again.
func (b *Backend) sync(ctx context.Context, lease clientv3.LeaseID, all bool) (int64, error) {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	return b.syncLocked(ctx, lease, all)
}

// syncLocked is sync for a caller that holds writeMu.
func (b *Backend) syncLocked(ctx context.Context, lease clientv3.LeaseID, all bool) (int64, error) {
	b.mu.Lock()
	var ops []op
	if all {
		for _, e := range b.held {
			e.dirty, e.tried = false, true
			ops = append(ops, op{e: e, path: e.path})
		}
	} else {
		for _, key := range b.dirty {
			if e := b.held[key]; e != nil && e.dirty {
				e.dirty, e.tried = false, true
				ops = append(ops, op{e: e, path: e.path})
			}
		}
	}
	b.dirty = b.dirty[:0]
	for path, t := range b.tombs {
		ops = append(ops, op{path: path, tomb: t})
	}
	clear(b.tombs)
	b.mu.Unlock()
	slices.SortFunc(ops, func(x, y op) int { return strings.Compare(x.path, y.path) })

	var rev int64
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		chunk := ops[:n]
		txn := make([]clientv3.Op, n)
		for i, o := range chunk {
			switch {
			case o.tomb != nil:
				txn[i] = clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(o.path), "=", lease)},
					[]clientv3.Op{clientv3.OpDelete(o.path)}, nil)
			case o.e.claim:
				txn[i] = clientv3.OpPut(o.path, o.e.value, clientv3.WithLease(lease))
			default:
				txn[i] = clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(o.path), "=", 0)},
					[]clientv3.Op{clientv3.OpPut(o.path, o.e.value, clientv3.WithLease(lease))},
					[]clientv3.Op{clientv3.OpGet(o.path)})
			}
		}
		var resps []*etcdserverpb.ResponseOp
		if n == 1 && chunk[0].e != nil && chunk[0].e.claim {
			// The common case, a Register: a plain put is cheaper than a
			// transaction.
			resp, err := b.cli.Put(ctx, chunk[0].path, chunk[0].e.value, clientv3.WithLease(lease))
			if err != nil {
				b.requeue(ops)
				return rev, err
			}
			rev = resp.Header.Revision
			resps = []*etcdserverpb.ResponseOp{{}}
		} else {
			resp, err := b.cli.Txn(ctx).Then(txn...).Commit()
			if err != nil {
				b.requeue(ops)
				return rev, err
			}
			rev = resp.Header.Revision
			resps = resp.Responses
		}
		b.applied(lease, rev, chunk, resps)
		ops = ops[n:]
	}
	return rev, nil
}

// markDirtyLocked asks the keeper to write e on its next pass.
func (b *Backend) markDirtyLocked(e *entry) {
	if !e.dirty {
		e.dirty = true
		b.dirty = append(b.dirty, e.inst.Key())
	}
}

// requeue marks the writes of a failed sync to be done again.
func (b *Backend) requeue(ops []op) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range ops {
		switch {
		case o.tomb != nil:
			if _, back := b.byPath[o.path]; back {
				finishAll(o.tomb.waiters, nil) // registered again meanwhile
			} else if t := b.tombs[o.path]; t != nil {
				t.waiters = append(t.waiters, o.tomb.waiters...)
			} else {
				b.tombs[o.path] = o.tomb
			}
		case b.held[o.e.inst.Key()] == o.e:
			b.markDirtyLocked(o.e)
		}
	}
}

// applied records the outcome of one committed transaction.
func (b *Backend) applied(lease clientv3.LeaseID, rev int64, ops []op, resps []*etcdserverpb.ResponseOp) {
	b.mu.Lock()
	defer b.mu.Unlock()
	again := false
	for i, o := range ops {
		if o.tomb != nil {
			finishAll(o.tomb.waiters, nil)
			continue
		}
		e := o.e
		current := b.held[e.inst.Key()] == e
		if !current {
			// Replaced or withdrawn meanwhile: a newer entry or a tomb
			// takes care of the key.
			continue
		}
		if txn := resps[i].GetResponseTxn(); txn != nil && !txn.Succeeded {
			// The key exists: ours, or another registrar's.
			kvs := txn.Responses[0].GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				b.markDirtyLocked(e)
				again = true
				continue
			}
			kv := kvs[0]
			if clientv3.LeaseID(kv.Lease) != lease {
				b.conflictLocked(e, clientv3.LeaseID(kv.Lease))
				continue
			}
			if string(kv.Value) != e.value {
				e.claim, again = true, true
				b.markDirtyLocked(e)
				continue
			}
			rev = kv.ModRevision
		}
		if !e.written {
			b.log.Debug("registered instance", "node", e.inst.Address, "key", e.path, "lease", leaseString(lease))
		}
		e.claim, e.written, e.conflict, e.rev = false, true, false, rev
		// Also after an update in place: the status carries the instance.
		// Set before Register returns, so its caller sees it.
		b.board.Set(discovery.Status{Instance: e.inst, State: discovery.StateRegistered})
		finishAll(e.waiters, nil)
		e.waiters = nil
	}
	if again {
		b.poke()
	}
}

// conflictLocked records that another registrar owns e's key.
func (b *Backend) conflictLocked(e *entry, theirs clientv3.LeaseID) {
	e.written = false
	if e.conflict {
		return
	}
	e.conflict = true
	err := fmt.Errorf("%w: key %s is under lease %s", discovery.ErrConflict, e.path, leaseString(theirs))
	b.board.Set(discovery.Status{Instance: e.inst, State: discovery.StateConflict, Err: err})
	b.log.Error("instance registered by another process; waiting for it to leave",
		"node", e.inst.Address, "key", e.path, "their_lease", leaseString(theirs))
}

// watchOwnKeys follows every change under the prefix from rev on and
// restores what others delete, until Close. It never gives up: a watch that
// ends is started again, from where it stopped.
func (b *Backend) watchOwnKeys(rev int64) {
	defer b.wg.Done()
	backoff := b.cfg.Retry.Backoff()
	for b.ctx.Err() == nil {
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(b.ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		failed := true
		for resp := range b.cli.Watch(ctx, b.cfg.Prefix+"/", opts...) {
			if resp.CompactRevision != 0 {
				// Changes were lost to compaction: check every key.
				b.log.Warn("own-key watch fell behind compaction, checking every instance",
					"compact_revision", resp.CompactRevision)
				rev, failed = 0, false
				b.markAllDirty()
				break
			}
			if err := resp.Err(); err != nil {
				b.log.Debug("own-key watch ended, restarting", "error", err)
				break
			}
			backoff = b.cfg.Retry.Backoff()
			for _, ev := range resp.Events {
				b.observe(ev)
				rev = ev.Kv.ModRevision + 1
			}
		}
		cancel()
		if failed {
			d, _ := backoff.Next()
			if retry.Sleep(b.ctx, d, nil) != nil {
				return
			}
		}
	}
}

// observe reacts to a change of one of the Backend's keys made by someone
// else.
func (b *Backend) observe(ev *clientv3.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.held[b.byPath[string(ev.Kv.Key)]]
	if e == nil {
		return // not ours
	}
	if ev.Kv.ModRevision <= e.rev {
		return // an echo of our own write, or older
	}
	switch ev.Type {
	case mvccpb.DELETE:
		b.markDirtyLocked(e)
		if e.written && !e.conflict {
			e.written = false
			b.board.Set(discovery.Status{Instance: e.inst, State: discovery.StateLost, Err: errRemoved})
			b.log.Warn("instance removed from etcd, restoring", "node", e.inst.Address, "key", e.path)
		}
		b.poke()
	case mvccpb.PUT:
		lease := clientv3.LeaseID(ev.Kv.Lease)
		if slices.Contains(b.ours, lease) {
			if string(ev.Kv.Value) != e.value && !e.dirty {
				b.markDirtyLocked(e)
				b.poke()
			}
			return
		}
		b.conflictLocked(e, lease)
	}
}

// markAllDirty asks the keeper to check every instance.
func (b *Backend) markAllDirty() {
	b.mu.Lock()
	for _, e := range b.held {
		b.markDirtyLocked(e)
	}
	b.mu.Unlock()
	b.poke()
}

// monitorConn follows the client's connection to etcd. Each time it
// becomes usable it signals connReady, so a waiting retry starts at once,
// and, after a failure, makes the watches resume (see resyncAll). When connecting
// fails it tells the watchers that etcd is unreachable.
func (b *Backend) monitorConn() {
	defer b.wg.Done()
	conn := b.cli.ActiveConnection()
	state := conn.GetState()
	failed := false
	for conn.WaitForStateChange(b.ctx, state) {
		state = conn.GetState()
		switch state {
		case connectivity.Ready:
			b.log.Debug("connection to etcd is usable")
			select {
			case b.connReady <- struct{}{}:
			default:
			}
			if failed {
				failed = false
				b.resyncAll()
			}
		case connectivity.TransientFailure:
			if !failed {
				failed = true
				b.log.Warn("cannot reach etcd", "endpoints", b.cli.Endpoints())
				cause := fmt.Errorf("no connection to etcd at %v", b.cli.Endpoints())
				b.watches.Each(func(_ string, f *discovery.Feed) { f.Fail(cause) })
			}
		}
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
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
