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

// leaseKeeper owns the Backend's lease and its writer. Its goroutine, the
// keeper, grants a lease when there is something to keep published, keeps
// it alive (keepAlive, keepalive.go), runs the writer on it, and grants
// another when etcd no longer has it. It never gives up; it ends only when
// ctx ends, on Close, which then stops the writer through it (stop).
// Register, Deregister, the writer and the own-key watch wake it through
// its kick. What it learns of the lease it records in the table
// (registrations' leaseState), where the writer and the own-key watch read
// it with the entries.
type leaseKeeper struct {
	leases pb.LeaseClient   // for grants that name their lease ID
	cli    *clientv3.Client // for revokes
	cfg    Config
	log    hclog.Logger
	ttl    int64 // lease TTL in seconds
	regs   *registrations
	conn   *connMonitor
	w      *writer // its own: made, run on the lease and stopped by the keeper

	ctx  context.Context // the Backend's: ends on Close
	wg   *sync.WaitGroup // the Backend's: Close waits for the keeper and its keep-alives
	kick kick            // wakes the keeper

	facts leaseFacts // what BackendFacts reports of the lease
}

// newLeaseKeeper returns the keeper of the Backend whose context is ctx
// and whose goroutines wg counts, with its writer, which writes through
// restorer's revision guard and has restorer follow the keys it writes.
// kick wakes it; the restorer holds it too.
func newLeaseKeeper(ctx context.Context, wg *sync.WaitGroup, cli *clientv3.Client, cfg Config,
	regs *registrations, conn *connMonitor, restorer *restorer, kick kick) *leaseKeeper {
	k := &leaseKeeper{
		leases: pb.NewLeaseClient(cli.ActiveConnection()),
		cli:    cli,
		cfg:    cfg,
		log:    cfg.Logger,
		ttl:    int64(cfg.TTL / time.Second),
		regs:   regs,
		conn:   conn,
		ctx:    ctx,
		wg:     wg,
		kick:   kick,
	}
	k.w = newWriter(cli, cfg, regs, restorer, conn, kick.poke)
	return k
}

// start runs the keeper in a goroutine of wg. Backend.start calls it once,
// with the table locked and open, so it never races with Close's wait.
func (k *leaseKeeper) start() { k.wg.Go(k.keep) }

// current returns the live lease, or 0 while there is none.
func (k *leaseKeeper) current() clientv3.LeaseID { return k.regs.liveLease() }

// writeOrPoke has the changes just recorded in the table written on the
// caller's goroutine, if the Backend has a live lease and nobody is
// writing, or wakes the keeper (writer.writeOrPoke).
func (k *leaseKeeper) writeOrPoke(ctx context.Context) { k.w.writeOrPoke(ctx) }

// stop is Close's, once the keeper's goroutines have ended: it stops the
// writer, waiting for a write still under way on a Register's goroutine,
// and returns the deletes never sent, which Close finishes.
func (k *leaseKeeper) stop() map[string]*tomb { return k.w.stop() }

// errLeaseExpired is the cause reported when etcd no longer has the lease.
var errLeaseExpired = backendkit.Mark(errors.New("lease expired or revoked"), discovery.ErrRemoved)

// keep holds a lease while the Backend holds instances, until Close.
func (k *leaseKeeper) keep() {
	var lease clientv3.LeaseID // the last lease, which etcd may still have
	for {
		if !k.regs.needsLease(lease) {
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

// establish makes sure the Backend has a live lease, retrying with the
// policy until it succeeds or the Backend closes.
//
// After an outage it asks etcd for prev again, by its ID: one request that
// both checks and acts. If etcd still has prev (etcd keeps leases through
// a restart and extends them by a whole TTL when a new leader takes over),
// it refuses, and the Backend keeps prev. That does not prove its keys are
// there: an etcd restored from a backup taken after the grant has the
// lease but not the keys written since. So it reads its written keys (one
// read-only transaction for up to 128 of them): an instance whose key is
// there under prev is registered, and one whose key is missing is reported
// lost and written again. It reads the keys rather than the lease
// (LeaseTimeToLive) because a member that is not the leader answers a
// read of keys itself, once the leader confirms its index (one raft
// message for every read waiting), but forwards each lease read to the
// leader over HTTP, where it waits for the leader to apply everything
// committed: after a whole-cluster restart of a loaded 3-member cluster,
// 1 000 processes' lease reads took 2.7 s (p50) and up to 5 s through the
// two followers, and under 0.4 s at the leader (issue #21,
// docs/fleet-sizing.md). The keep-alive then renews early, and its
// answer gives the remaining TTL. Otherwise etcd grants prev anew, empty,
// and every held instance is marked to be written under it. Requests once
// etcd answers: two when the lease survived (plus the writer's
// transactions for missing keys); one plus the writer's transactions when
// it had expired.
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
		survived bool              // etcd still had prev
		read     map[string]bool   // the keys read, if it survived
		there    map[string][]byte // those of them etcd holds under prev, with their values
	)
	// refused is set once etcd refused prev as existing: later attempts
	// (the read that follows failed) read the keys again without asking
	// for the lease again. A key missing then is written again under
	// prev; if prev expired meanwhile, the write fails and the keep-alive
	// ends, and the next establish grants it again.
	refused := false
	attempt := func(ctx context.Context) error {
		what := "grant lease"
		if prev != 0 {
			what = "grant lease " + leaseString(prev) + " again"
		}
		if refused {
			what = "read the keys under lease " + leaseString(prev)
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
				// etcd has it, for about a TTL from the refusal if a
				// leader took over since it last renewed it (a
				// restart): the keep-alive renews early to know. Its
				// keys are read below.
				refused = true
				since = sent
			case err != nil:
				return k.conn.explain(fmt.Errorf("%s: %w", what, err))
			default:
				if prev != 0 {
					k.log.Warn("lease expired, granted it again", "lease", leaseString(prev))
					k.regs.leaseLost(errLeaseExpired)
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
		var err error
		read, there, err = k.readKeys(rctx, prev)
		if err != nil {
			return k.conn.explain(fmt.Errorf("%s: %w", what, err))
		}
		lease, survived, left = prev, true, ttl
		return nil
	}
	err := k.cfg.Retry.Do(k.ctx, attempt, retry.OnFailure(k.regs.leaseRetrying),
		retry.WakeOn(k.conn.ready), retry.WakeJitter(k.wakeJitter()), retry.ResetOnWake())
	if err != nil {
		return grant{}, err
	}
	if survived {
		// Instances missing under it, or older there, are written again.
		k.regs.leaseKept(lease, read, there)
	} else {
		// The keys still to delete went with prev, which etcd no longer
		// had; every instance is written under the new lease.
		k.regs.leaseGranted(lease)
	}
	return grant{id: lease, ttl: ttl, left: left, since: since, spreadRenewal: survived}, nil
}

// maxReadOps is how many keys one read-only transaction reads: etcd's
// default limit of operations in a transaction.
const maxReadOps = 128

// readKeys reads the keys of the instances written before an outage,
// those checkLocked judges, in read-only transactions of up to maxReadOps
// keys, and returns the keys read and, with their values, those of them
// etcd holds under lease. A Backend with nothing written reads nothing.
func (k *leaseKeeper) readKeys(ctx context.Context, lease clientv3.LeaseID) (read map[string]bool, there map[string][]byte, err error) {
	paths := k.regs.writtenPaths()
	read = make(map[string]bool, len(paths))
	there = make(map[string][]byte, len(paths))
	for chunk := range slices.Chunk(paths, maxReadOps) {
		ops := make([]clientv3.Op, len(chunk))
		for i, p := range chunk {
			// Values too: a keys-only read does not say the lease.
			ops[i] = clientv3.OpGet(p)
		}
		resp, err := k.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, nil, err
		}
		for i, r := range resp.Responses {
			read[chunk[i]] = true
			for _, kv := range r.GetResponseRange().Kvs {
				if clientv3.LeaseID(kv.Lease) == lease {
					there[string(kv.Key)] = kv.Value
				}
			}
		}
	}
	return read, there, nil
}

// grant is a lease establish made sure of.
type grant struct {
	id    clientv3.LeaseID
	ttl   time.Duration // as granted; the configured TTL for a lease kept
	left  time.Duration // how long etcd keeps it from since: ttl when just granted
	since time.Time
	// spreadRenewal: a lease kept through an outage, whose remaining
	// TTL etcd did not say (left is the TTL etcd gives a lease when a
	// new leader takes over): the keep-alive renews early, at a random
	// moment (startKeepAlive).
	spreadRenewal bool
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
	ka := startKeepAlive(ctx, k.leases, lease, g.ttl, g.left, g.since, g.spreadRenewal, k.unconfirmed, k.cfg.RequestTimeout, k.confirmed, k.log, k.wg, &k.facts)
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
			k.log.Warn("keep-alive failed, will retry", "lease", leaseString(lease), "instances", k.regs.instanceCount(), "cause", ka.err)
			k.regs.leaseInDoubt()
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
			if k.regs.idle() {
				k.revokeIdle(lease)
				return 0
			}
			k.regs.logRegistered(lease)
		case k.ctx.Err() != nil:
			return 0
		case errors.Is(err, errLeaseGone):
			// establish has it granted again, under the same ID.
			k.log.Warn("lease expired or revoked, will retry", "lease", leaseString(lease), "instances", k.regs.instanceCount())
			k.regs.leaseInDoubt()
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
	k.regs.revoked(lease)
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

// poke wakes the keeper without blocking.
func (k *leaseKeeper) poke() { k.kick.poke() }

// kick wakes the keeper: a channel of capacity 1, so that the wakes that
// come while the keeper is busy make one more round, not one each.
type kick chan struct{}

func newKick() kick { return make(kick, 1) }

// poke wakes the keeper without blocking.
func (k kick) poke() {
	select {
	case k <- struct{}{}:
	default:
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
