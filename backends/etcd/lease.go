package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/retry"
)

// leaseKeeper owns the Backend's lease. Its goroutine, the keeper, grants
// a lease when there is something to keep published, keeps it alive
// (keepAlive, keepalive.go), runs the writer on it, and grants another
// when etcd no longer has it. It never gives up; it ends only when ctx
// ends, on Close. Register, Deregister, the writer and the own-key watch
// wake it with poke.
type leaseKeeper struct {
	leases pb.LeaseClient   // for grants that name their lease ID
	cli    *clientv3.Client // for revokes
	cfg    Config
	log    hclog.Logger
	ttl    int64 // lease TTL in seconds
	regs   *registrations
	conn   *connMonitor
	w      *writer // runs on the lease; set once by newBackend

	ctx  context.Context // the Backend's: ends on Close
	wg   *sync.WaitGroup // the Backend's: Close waits for the keeper and its keep-alives
	kick chan struct{}   // wakes the keeper; capacity 1

	// Guarded by regs.mu, which the writer and the own-key watch hold
	// when they read them with the table.
	lease   clientv3.LeaseID   // the live lease; 0 while (re-)establishing
	granted clientv3.LeaseID   // the newest lease granted, which Close revokes
	ours    []clientv3.LeaseID // recent leases of ours, to tell our writes from others'
	// announce asks the writer to log "registered" once every held
	// instance is written under a newly granted lease.
	announce bool

	facts leaseFacts // what BackendFacts reports of the lease
}

func newLeaseKeeper(ctx context.Context, wg *sync.WaitGroup, cli *clientv3.Client, cfg Config,
	regs *registrations, conn *connMonitor) *leaseKeeper {
	return &leaseKeeper{
		leases: pb.NewLeaseClient(cli.ActiveConnection()),
		cli:    cli,
		cfg:    cfg,
		log:    cfg.Logger,
		ttl:    int64(cfg.TTL / time.Second),
		regs:   regs,
		conn:   conn,
		ctx:    ctx,
		wg:     wg,
		kick:   make(chan struct{}, 1),
	}
}

// start runs the keeper in a goroutine of wg. Backend.start calls it once,
// with regs.mu held and the Backend open, so it never races with Close's
// wait.
func (k *leaseKeeper) start() { k.wg.Go(k.keep) }

// current returns the live lease, or 0 while there is none.
func (k *leaseKeeper) current() clientv3.LeaseID {
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	return k.lease
}

// errLeaseExpired is the cause reported when etcd no longer has the lease.
var errLeaseExpired = backendkit.Mark(errors.New("lease expired or revoked"), discovery.ErrRemoved)

// keep holds a lease while the Backend holds instances, until Close.
func (k *leaseKeeper) keep() {
	var lease clientv3.LeaseID // the last lease, which etcd may still have
	for {
		if !k.hasWork(lease) {
			select {
			case <-k.kick:
				continue
			case <-k.ctx.Done():
				return
			}
		}
		g, err := k.establish(lease)
		if err != nil {
			return // closed
		}
		lease = k.serve(g)
		if k.ctx.Err() != nil {
			return
		}
	}
}

// hasWork reports whether the Backend holds instances, which need a lease,
// or keys to delete that etcd may still hold under prev, the last lease:
// after a keep-alive that timed out, etcd may have it still (it keeps
// leases through a restart), and establish finds out. Without a lease,
// pending deletes are moot: the keys went with the lease they were under.
func (k *leaseKeeper) hasWork(prev clientv3.LeaseID) bool {
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	if len(k.regs.held) > 0 || (prev != 0 && len(k.regs.tombs) > 0) {
		return true
	}
	k.finishTombsLocked()
	return false
}

// finishTombsLocked tells the pending deletes that their keys are gone
// with the lease they were under.
func (k *leaseKeeper) finishTombsLocked() {
	for _, t := range k.regs.tombs {
		finishAll(t.waiters, nil)
	}
	clear(k.regs.tombs)
}

// establish makes sure the Backend has a live lease, retrying with the
// policy until it succeeds or the Backend closes.
//
// After an outage it asks etcd for prev again, by its ID: one request that
// both checks and acts. If etcd still has prev (etcd keeps leases through
// a restart and extends them when a new leader takes over), it refuses,
// and the Backend keeps prev. That does not prove its keys are there: an
// etcd restored from a backup taken after the grant has the lease but not
// the keys written since. So it reads the lease with the keys under it
// (one request, which also gives the remaining TTL the keep-alive needs):
// an instance whose key is there is registered, and one whose key is
// missing is reported lost and written again. Otherwise etcd grants prev
// anew, empty, and every held instance is marked to be written under it.
// Requests once etcd answers: two when the lease survived (plus the
// writer's transactions, one for up to 128 instances, for missing keys);
// one plus the writer's transactions when it had expired.
//
// A grant whose answer was lost and that is retried is refused too; the
// keys it no longer holds were deleted when it expired, and the own-key
// watch, resuming from before, reports those deletes.
func (k *leaseKeeper) establish(prev clientv3.LeaseID) (grant, error) {
	drain(k.conn.ready) // only a connection that comes up from now on is news
	var (
		lease    clientv3.LeaseID
		ttl      = time.Duration(k.ttl) * time.Second
		left     time.Duration // how long etcd keeps the lease from since
		since    time.Time
		survived bool     // etcd still had prev
		keys     [][]byte // the keys etcd holds under prev, if it survived
	)
	// refused is set once etcd refused prev as existing: later attempts
	// (the read that follows failed) read the lease again without asking
	// for it again, until etcd says it is gone.
	refused := false
	attempt := func(ctx context.Context) error {
		what := "grant lease"
		if prev != 0 {
			what = "grant lease " + leaseString(prev) + " again"
		}
		if refused {
			what = "read lease " + leaseString(prev)
		}
		// The request's timeout runs from when it can be sent, not from
		// before the connection came back.
		if err := k.conn.waitUsable(ctx, k.cfg.RequestTimeout); err != nil {
			return k.conn.explain(fmt.Errorf("%s: %w", what, err))
		}
		if !refused {
			gctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
			defer cancel()
			sent := time.Now()
			// Like clientv3's calls, it waits for a connection until gctx ends.
			resp, err := k.leases.LeaseGrant(gctx, &pb.LeaseGrantRequest{TTL: k.ttl, ID: int64(prev)}, grpc.WaitForReady(true))
			switch err := grpcError(gctx, err); {
			case prev != 0 && errors.Is(err, rpctypes.ErrLeaseExist):
				// etcd has it: read how long it keeps it, and what it
				// holds under it, below.
				refused = true
			case err != nil:
				return k.conn.explain(fmt.Errorf("%s: %w", what, err))
			default:
				if prev != 0 {
					k.log.Warn("lease expired, granted it again", "lease", leaseString(prev))
					k.leaseLost(errLeaseExpired)
				}
				lease, ttl = clientv3.LeaseID(resp.ID), time.Duration(resp.TTL)*time.Second
				left, since = ttl, sent
				// etcd counts the TTL from when it granted, after the
				// request was sent.
				k.facts.renewed(sent.Add(ttl), 0)
				return nil
			}
		}
		// The read has a timeout of its own: the grant may have used
		// most of its own.
		rctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
		defer cancel()
		sent := time.Now()
		resp, err := k.leases.LeaseTimeToLive(rctx, &pb.LeaseTimeToLiveRequest{ID: int64(prev), Keys: true}, grpc.WaitForReady(true))
		if err := grpcError(rctx, err); err != nil {
			return k.conn.explain(fmt.Errorf("read lease %s: %w", leaseString(prev), err))
		}
		if resp.TTL < 0 {
			// Expired in between: the next attempt grants it again.
			refused = false
			return fmt.Errorf("read lease %s: %w", leaseString(prev), errLeaseExpired)
		}
		lease, survived, keys = prev, true, resp.Keys
		left, since = time.Duration(resp.TTL)*time.Second, sent
		k.facts.renewed(sent.Add(left), 0)
		return nil
	}
	err := k.cfg.Retry.Do(k.ctx, attempt, retry.OnFailure(k.retrying),
		retry.WakeOn(k.conn.ready), retry.WakeJitter(k.wakeJitter()), retry.ResetOnWake())
	if err != nil {
		return grant{}, err
	}
	g := grant{id: lease, ttl: ttl, left: left, since: since}
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	k.lease, k.announce = lease, true
	if survived {
		k.checkLocked(keys)
		k.logRegisteredLocked(lease)
		return g, nil
	}
	// The keys still to delete went with prev, which etcd no longer had.
	k.finishTombsLocked()
	k.granted = lease
	if !slices.Contains(k.ours, lease) {
		k.ours = append(k.ours, lease)
	}
	if len(k.ours) > 8 {
		k.ours = slices.Delete(k.ours, 0, len(k.ours)-8)
	}
	for key := range k.regs.held {
		k.regs.dirty[key] = struct{}{}
	}
	return g, nil
}

// grant is a lease establish made sure of.
type grant struct {
	id    clientv3.LeaseID
	ttl   time.Duration // as granted; the configured TTL for a lease kept
	left  time.Duration // how long etcd keeps it from since: ttl when just granted
	since time.Time
}

// checkLocked compares the held instances with keys, what etcd holds under
// the lease that survived an outage: an instance written before and still
// there is registered; one missing (an etcd restored from a backup older
// than its write) is reported lost and written again. Instances being
// written, and those another registrar owns, are left to the writer and
// the own-key watch.
func (k *leaseKeeper) checkLocked(keys [][]byte) {
	there := make(map[string]bool, len(keys))
	for _, key := range keys {
		there[string(key)] = true
	}
	for key, e := range k.regs.held {
		if _, dirty := k.regs.dirty[key]; dirty || e.conflict || !e.written {
			continue
		}
		if there[e.path] {
			if e.state != discovery.StateRegistered {
				k.regs.reportLocked(e, discovery.Status{State: discovery.StateRegistered})
			}
			continue
		}
		e.written = false
		k.regs.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: errRemoved})
		k.log.Warn("instance missing from etcd under the lease it kept, restoring", "node", e.inst.Address, "key", e.path)
		k.regs.dirty[key] = struct{}{}
	}
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
func (k *leaseKeeper) wakeJitter() time.Duration { return k.cfg.ReconnectDelay / 2 }

// retrying reports a failed attempt to grant a lease.
func (k *leaseKeeper) retrying(f retry.Failure) {
	k.regs.retries.Add(1)
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	for _, e := range k.regs.held {
		if e.conflict {
			continue // still the last thing known of it
		}
		k.regs.reportLocked(e, discovery.Status{State: discovery.StateRetrying, Attempt: f.Attempt, RetryIn: f.Delay, Err: f.Err})
	}
	k.log.Warn("failed to maintain lease, retrying", "node", nodeList(k.regs.held), "instances", len(k.regs.held),
		"attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
}

// serve keeps lease alive and runs the writer on it until etcd no longer
// has the lease, nothing is left to keep, or the Backend closes. A write
// that fails does not end it: the keys already in etcd stay under the live
// lease while the writer retries. It returns the lease for establish to
// keep or grant again, or 0 when the Backend closed or revoked the idle
// lease.
func (k *leaseKeeper) serve(g grant) clientv3.LeaseID {
	lease := g.id
	ctx, cancel := context.WithCancel(k.ctx)
	defer cancel()
	ka := startKeepAlive(ctx, k.leases, lease, g.ttl, g.left, g.since, k.unconfirmed, k.cfg.RequestTimeout, k.confirmed, k.log, k.wg, &k.facts)
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
			if k.ctx.Err() != nil {
				return 0
			}
			k.log.Warn("keep-alive failed, will retry", "lease", leaseString(lease), "instances", k.regs.heldCount(), "cause", ka.err)
			k.setLease(0)
			return lease
		case <-k.kick:
			if time.Now().Before(resumeAt) {
				continue // the timer ends the wait
			}
		case <-timer.C:
		case <-k.conn.ready:
			if outage != nil {
				// Back from an outage: retry now, but spread, and
				// the delays that grew with the outage start over:
				// a failure soon after (etcd still electing a leader)
				// is retried after the policy's Base.
				outage = k.cfg.Retry.Backoff()
				resumeAt = time.Now().Add(jitter(k.wakeJitter()))
				timer.Reset(time.Until(resumeAt))
			}
			continue
		case <-k.ctx.Done():
			return 0
		}
		wctx, wcancel := context.WithTimeout(k.ctx, k.cfg.RequestTimeout)
		err := k.w.sync(wctx, lease)
		wcancel()
		switch {
		case err == nil:
			outage, attempt, resumeAt = nil, 0, time.Time{}
			if k.idle() {
				k.revokeIdle(lease)
				return 0
			}
			k.logRegistered(lease)
		case k.ctx.Err() != nil:
			return 0
		case errors.Is(err, errLeaseGone):
			// establish has it granted again, under the same ID.
			k.log.Warn("lease expired or revoked, will retry", "lease", leaseString(lease), "instances", k.regs.heldCount())
			k.setLease(0)
			return lease
		default:
			if outage == nil {
				outage = k.cfg.Retry.Backoff()
			}
			attempt++
			d, _ := outage.Next()
			resumeAt = time.Now().Add(d)
			k.w.writeFailed(lease, attempt, d, err)
		}
		if d, ok := k.w.nextPass(resumeAt); ok {
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

func (k *leaseKeeper) setLease(lease clientv3.LeaseID) {
	k.regs.mu.Lock()
	k.lease = lease
	k.regs.mu.Unlock()
}

// leaseLost records that etcd no longer has the lease, nor the instances
// written under it.
func (k *leaseKeeper) leaseLost(cause error) {
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	k.lease = 0
	for _, e := range k.regs.held {
		if e.written && !e.conflict {
			e.written = false
			k.regs.reportLocked(e, discovery.Status{State: discovery.StateLost, Err: cause})
		}
	}
}

// idle reports whether nothing is left to keep published; the lease is then
// no longer offered to writers.
func (k *leaseKeeper) idle() bool {
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	if len(k.regs.held) > 0 || len(k.regs.tombs) > 0 || len(k.regs.dirty) > 0 {
		return false
	}
	k.lease = 0
	return true
}

// revokeIdle revokes a lease that holds nothing any more, rather than
// keeping it alive for the life of the process; the next Register grants
// another.
func (k *leaseKeeper) revokeIdle(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(k.ctx, k.cfg.RequestTimeout)
	defer cancel()
	if _, err := k.cli.Revoke(ctx, lease); err != nil {
		k.log.Debug("failed to revoke the idle lease; it expires on its own", "lease", leaseString(lease), "error", err)
		return
	}
	k.regs.mu.Lock()
	if k.granted == lease {
		k.granted = 0
	}
	k.regs.mu.Unlock()
	k.log.Info("revoked lease", "lease", leaseString(lease), "instances", 0)
}

// revoke revokes lease on Close, bounded by Config.RequestTimeout, so that
// the instances under it (as many as instances) leave etcd at once. The
// keeper has ended.
func (k *leaseKeeper) revoke(lease clientv3.LeaseID, instances int) error {
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.RequestTimeout)
	_, err := k.cli.Revoke(ctx, lease)
	cancel()
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		k.log.Warn("failed to revoke lease on close; instances expire with it", "lease", leaseString(lease), "ttl", k.cfg.TTL, "error", err)
		return fmt.Errorf("etcd: revoke lease %s: %w", leaseString(lease), err)
	}
	k.log.Info("revoked lease", "lease", leaseString(lease), "instances", instances)
	return nil
}

// logRegistered logs, once per new lease, that the instances are
// registered under it.
func (k *leaseKeeper) logRegistered(lease clientv3.LeaseID) {
	k.regs.mu.Lock()
	defer k.regs.mu.Unlock()
	k.logRegisteredLocked(lease)
}

// logRegisteredLocked is logRegistered for a caller that holds k.regs.mu: the
// one that reports the last instance registered, so that the log line is
// written before anyone sees the state.
func (k *leaseKeeper) logRegisteredLocked(lease clientv3.LeaseID) {
	if !k.announce {
		return
	}
	for key := range k.regs.dirty {
		if e := k.regs.held[key]; e != nil && e.refusals == 0 {
			return // not all written yet
		}
	}
	for _, e := range k.regs.held {
		if e.state != discovery.StateRegistered && !e.conflict && e.refusals == 0 {
			return // being written, in a later batch of this pass
		}
	}
	k.announce = false
	registered := make(map[discovery.Key]*entry, len(k.regs.held))
	conflicts, refused := 0, 0
	for key, e := range k.regs.held {
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
	k.log.Info("registered", args...)
}

// poke wakes the keeper without blocking.
func (k *leaseKeeper) poke() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
