package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// The keeper goroutine owns the Backend's lease: it grants one when there
// is something to keep published, keeps it alive, runs the writer on it,
// and grants another when etcd no longer has it. It never gives up; it
// ends only on Close.

// keep holds a lease while the Backend holds instances, until Close.
func (b *Backend) keep() {
	defer b.wg.Done()
	var lease clientv3.LeaseID // the last lease, which etcd may still have
	for {
		if !b.hasWork() {
			select {
			case <-b.kick:
				continue
			case <-b.ctx.Done():
				return
			}
		}
		g, err := b.establish(lease)
		if err != nil {
			return // closed
		}
		lease = b.serve(g)
		if b.ctx.Err() != nil {
			return
		}
	}
}

// hasWork reports whether the Backend holds instances, which need a lease.
// Without a lease, pending deletes are moot: the keys went with the lease
// they were under.
func (b *Backend) hasWork() bool {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	if len(b.regs.held) > 0 {
		return true
	}
	for _, t := range b.regs.tombs {
		finishAll(t.waiters, nil)
	}
	clear(b.regs.tombs)
	return false
}

// establish makes sure the Backend has a live lease, retrying with the
// policy until it succeeds or the Backend closes.
//
// After an outage it asks etcd for prev again, by its ID: one request that
// both checks and acts. If etcd still has prev (etcd keeps leases through
// a restart and extends them when a new leader takes over), it refuses,
// and the Backend keeps prev: its keys are still there, and the own-key
// watch reports any that someone removed meanwhile. Otherwise etcd grants
// prev anew, empty, and every held instance is marked to be written under
// it. Requests once etcd answers: one, plus the writer's transactions
// (one for up to 128 instances) when the lease had expired.
//
// A grant whose answer was lost and that is retried is refused too; the
// keys it no longer holds were deleted when it expired, and the own-key
// watch, resuming from before, reports those deletes.
func (b *Backend) establish(prev clientv3.LeaseID) (grant, error) {
	drain(b.conn.ready) // only a connection that comes up from now on is news
	var (
		lease    clientv3.LeaseID
		ttl      = time.Duration(b.ttl) * time.Second
		survived bool // etcd still had prev
	)
	attempt := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
		defer cancel()
		what := "grant lease"
		if prev != 0 {
			what = "grant lease " + leaseString(prev) + " again"
		}
		// Like clientv3's calls, it waits for a connection until ctx ends.
		resp, err := b.leases.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: b.ttl, ID: int64(prev)}, grpc.WaitForReady(true))
		switch err := grpcError(ctx, err); {
		case prev != 0 && errors.Is(err, rpctypes.ErrLeaseExist):
			lease, survived = prev, true
			return nil
		case err != nil:
			return b.explain(fmt.Errorf("%s: %w", what, err))
		}
		if prev != 0 {
			b.log.Warn("lease expired, granted it again", "lease", leaseString(prev))
			b.leaseLost(errLeaseExpired)
		}
		lease, ttl = clientv3.LeaseID(resp.ID), time.Duration(resp.TTL)*time.Second
		return nil
	}
	err := b.cfg.Retry.Do(b.ctx, attempt, retry.OnFailure(b.retrying),
		retry.WakeOn(b.conn.ready), retry.WakeJitter(b.wakeJitter()))
	if err != nil {
		return grant{}, err
	}
	g := grant{id: lease, ttl: ttl, fresh: !survived}
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	b.lease, b.announce = lease, true
	if survived {
		// What etcd held under it, it holds still.
		for key, e := range b.regs.held {
			if _, dirty := b.regs.dirty[key]; !dirty && e.written && e.state != discovery.StateRegistered {
				b.regs.reportLocked(e, discovery.Status{State: discovery.StateRegistered})
			}
		}
		b.logRegisteredLocked(lease)
		return g, nil
	}
	b.granted = lease
	if !slices.Contains(b.ours, lease) {
		b.ours = append(b.ours, lease)
	}
	if len(b.ours) > 8 {
		b.ours = slices.Delete(b.ours, 0, len(b.ours)-8)
	}
	for key := range b.regs.held {
		b.regs.dirty[key] = struct{}{}
	}
	return g, nil
}

// grant is a lease establish made sure of.
type grant struct {
	id    clientv3.LeaseID
	ttl   time.Duration // as granted; the configured TTL for a lease kept
	fresh bool          // just granted, with its whole TTL
}

// grpcError turns an error of a raw gRPC call into what clientv3 would
// return: etcd's own errors as rpctypes errors, and the end of ctx as
// ctx's error.
func grpcError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		switch status.Code(err) {
		case codes.DeadlineExceeded, codes.Canceled:
			return ctx.Err()
		}
	}
	return rpctypes.Error(err)
}

// wakeJitter spreads the attempts that a returning connection wakes, so
// that a fleet cut off together does not retry in the same millisecond: a
// returning cluster sees a ramp, not a wall.
func (b *Backend) wakeJitter() time.Duration { return b.cfg.ReconnectDelay / 2 }

// retrying reports a failed attempt to grant a lease.
func (b *Backend) retrying(f retry.Failure) {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	for _, e := range b.regs.held {
		if e.conflict {
			continue // still the last thing known of it
		}
		b.regs.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: f.Attempt, RetryIn: f.Delay, Err: f.Err})
	}
	b.log.Warn("failed to maintain lease, retrying", "node", nodeList(b.regs.held), "instances", len(b.regs.held),
		"attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
}

// serve keeps lease alive and runs the writer on it until etcd no longer
// has the lease, nothing is left to keep, or the Backend closes. A write
// that fails does not end it: the keys already in etcd stay under the live
// lease while the writer retries. It returns the lease for establish to
// keep or grant again, or 0 when the Backend closed or revoked the idle
// lease.
func (b *Backend) serve(g grant) clientv3.LeaseID {
	lease := g.id
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	ka := startKeepAlive(ctx, b.leases, lease, g.ttl, g.fresh, b.log, &b.wg)
	var (
		outage   retry.Backoff // for write passes failing in a row; nil after a success
		attempt  int
		resumeAt time.Time // no write pass before then
	)
	timer := time.NewTimer(0) // write what establish marked
	defer timer.Stop()
	for {
		select {
		case <-ka.done:
			if b.ctx.Err() != nil {
				return 0
			}
			b.log.Warn("keep-alive failed, will retry", "lease", leaseString(lease), "instances", b.regs.heldCount(), "cause", ka.err)
			b.setLease(0)
			return lease
		case <-b.kick:
			if time.Now().Before(resumeAt) {
				continue // the timer ends the wait
			}
		case <-timer.C:
		case <-b.conn.ready:
			if outage != nil {
				// Back from an outage: retry now, but spread.
				resumeAt = time.Now().Add(jitter(b.wakeJitter()))
				timer.Reset(time.Until(resumeAt))
			}
			continue
		case <-b.ctx.Done():
			return 0
		}
		wctx, wcancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
		err := b.sync(wctx, lease)
		wcancel()
		switch {
		case err == nil:
			outage, attempt, resumeAt = nil, 0, time.Time{}
			if b.idle() {
				b.revokeIdle(lease)
				return 0
			}
			b.logRegistered(lease)
		case b.ctx.Err() != nil:
			return 0
		case errors.Is(err, errLeaseGone):
			// establish has it granted again, under the same ID.
			b.log.Warn("lease expired or revoked, will retry", "lease", leaseString(lease), "instances", b.regs.heldCount())
			b.setLease(0)
			return lease
		default:
			if outage == nil {
				outage = b.cfg.Retry.Backoff()
			}
			attempt++
			d, _ := outage.Next()
			resumeAt = time.Now().Add(d)
			b.writeFailed(lease, attempt, d, err)
		}
		if d, ok := b.nextPass(resumeAt); ok {
			timer.Reset(d)
		} else {
			timer.Stop()
		}
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

func (b *Backend) setLease(lease clientv3.LeaseID) {
	b.regs.mu.Lock()
	b.lease = lease
	b.regs.mu.Unlock()
}

// leaseLost records that etcd no longer has the lease, nor the instances
// written under it.
func (b *Backend) leaseLost(cause error) {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	b.lease = 0
	for _, e := range b.regs.held {
		if e.written && !e.conflict {
			e.written = false
			b.regs.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: cause})
		}
	}
}

// idle reports whether nothing is left to keep published; the lease is then
// no longer offered to writers.
func (b *Backend) idle() bool {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	if len(b.regs.held) > 0 || len(b.regs.tombs) > 0 || len(b.regs.dirty) > 0 {
		return false
	}
	b.lease = 0
	return true
}

// revokeIdle revokes a lease that holds nothing any more, rather than
// keeping it alive for the life of the process; the next Register grants
// another.
func (b *Backend) revokeIdle(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
	defer cancel()
	if _, err := b.cli.Revoke(ctx, lease); err != nil {
		b.log.Debug("failed to revoke the idle lease; it expires on its own", "lease", leaseString(lease), "error", err)
		return
	}
	b.regs.mu.Lock()
	if b.granted == lease {
		b.granted = 0
	}
	b.regs.mu.Unlock()
	b.log.Info("revoked lease", "lease", leaseString(lease), "instances", 0)
}

// logRegistered logs, once per new lease, that the instances are
// registered under it.
func (b *Backend) logRegistered(lease clientv3.LeaseID) {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	b.logRegisteredLocked(lease)
}

// logRegisteredLocked is logRegistered for a caller that holds b.regs.mu: the
// one that reports the last instance registered, so that the log line is
// written before anyone sees the state.
func (b *Backend) logRegisteredLocked(lease clientv3.LeaseID) {
	if !b.announce {
		return
	}
	for key := range b.regs.dirty {
		if e := b.regs.held[key]; e != nil && e.refusals == 0 {
			return // not all written yet
		}
	}
	for _, e := range b.regs.held {
		if e.state != discovery.StateRegistered && !e.conflict && e.refusals == 0 {
			return // being written, in a later batch of this pass
		}
	}
	b.announce = false
	registered := make(map[discovery.Key]*entry, len(b.regs.held))
	conflicts, refused := 0, 0
	for key, e := range b.regs.held {
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
	b.log.Info("registered", args...)
}
