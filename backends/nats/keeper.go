package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/retry"
)

// renewEvery is how often the keeper renews each key: a third of the TTL,
// so that two renewals in a row may fail before the key expires.
func (b *Backend) renewEvery() time.Duration { return b.cfg.TTL / 3 }

// recheckDelay and maxRechecks bound how long the keeper keeps looking at
// a key after an event whose write the bucket does not show yet: 40 looks
// 10 ms apart, about 400 ms, after which the next renewal decides. (A
// write that JetStream refused, such as a compare-and-set that lost a
// race, is never stored.)
const (
	recheckDelay = 10 * time.Millisecond
	maxRechecks  = 40
)

// keep is the keeper goroutine: it renews every key each renewEvery, as
// soon as the connection comes back after a drop and as soon as the
// bucket is found gone (it is then created again), looks at a key as
// soon as another process writes, deletes or purges it, and after a
// failure retries with the retry policy, at once when the connection
// comes back. It ends only when Close starts.
func (b *Backend) keep() {
	t := time.NewTicker(b.renewEvery())
	defer t.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	for {
		if b.pending.Swap(false) {
			recheck.Reset(recheckDelay)
		}
		_, changed, _ := b.conn.get()
		lost := b.lostSignal()
		select {
		case <-b.ctx.Done():
			return
		case <-lost:
			// The bucket is gone (deleted, say): create it again and
			// publish every key now rather than at the next tick.
			if b.connected() == nil {
				b.run(true)
			}
		case <-changed:
			// Back from an outage, during which the own-key subscriptions
			// missed whatever others did to the keys (a purge, say):
			// renew them all now rather than at the next tick.
			if b.connected() == nil {
				b.run(true)
			}
		case <-recheck.C:
			b.run(false)
		case m := <-b.events:
			b.mark(m)
			for drained := false; !drained; {
				select {
				case m := <-b.events:
					b.mark(m)
				default:
					drained = true
				}
			}
			b.run(false)
		case <-t.C:
			b.run(true)
		}
	}
}

// mark flags the registration of m's subject for a look. A nil m (sent by
// raced) flags nothing new: the registration is flagged already.
func (b *Backend) mark(m *natsgo.Msg) {
	if m == nil {
		return
	}
	b.mu.Lock()
	r := b.bySubject[m.Subject]
	b.mu.Unlock()
	if r != nil {
		r.check.Store(true)
	}
}

// run brings the registrations in line with the bucket (all of them and
// renewing if full, else those marked) and, on a failure, retries with the
// retry policy, renewing everything, until it succeeds or Close starts.
// A wait ends at once (after up to wakeJitter) when the connection comes
// back (or drops, which costs one early attempt) or when the bucket's
// stream elects a leader, and the backoff then starts again from the
// policy's Base: the delays grew with an outage that has ended, and a
// failure right after it (a restarted cluster that takes connections
// seconds before JetStream answers) must not wait out the 30 s the
// outage reached.
func (b *Backend) run(full bool) {
	// Subscribed before the first attempt, so that a connection that
	// drops or comes back, or a leader elected, during an attempt ends
	// the next wait at once.
	wake, unsubscribe := b.conn.wake.Subscribe()
	defer unsubscribe()
	first := true
	_ = b.cfg.Retry.Do(b.ctx, func(context.Context) error {
		if err := b.connected(); err != nil {
			return err // no request can get through: wait for the next delay or the reconnection
		}
		err := b.syncAll(full || !first)
		first = false
		if errors.Is(err, jetstream.ErrNoStreamResponse) && !b.streamGone() {
			// The writes found no stream, but the bucket is there: its
			// stream has no leader yet (a cluster restarted, its leader
			// stopped). Kept, rather than opened again (two or three
			// JetStream API requests per process, the first of them left
			// unanswered until the election): the next attempt comes at
			// the election.
			return err
		}
		// A bucket found gone (a server restarted without its data, a
		// deleted bucket) is created again, and every key published
		// again, at once rather than after the retry policy's delay:
		// once per failure, so that a bucket that cannot be made to stay
		// does not make the keeper spin.
		if b.checkBucket(err) && b.connected() == nil {
			err = b.syncAll(true)
		}
		return err
	}, retry.OnFailure(func(f retry.Failure) {
		b.retries.Add(1)
		n := b.retrying(f.Attempt, f.Delay, f.Err)
		b.log.Warn("failed to renew instances, will retry", "instances", n, "attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
	}), retry.WakeOn(wake), retry.WakeJitter(b.wakeJitter()), retry.ResetOnWake())
}

// wakeJitter spreads the attempts of a fleet that one event woke (a
// cluster back, a leader elected) over up to ReconnectDelay, rather than
// have them all ask JetStream in the same millisecond.
func (b *Backend) wakeJitter() time.Duration { return b.cfg.ReconnectDelay }

// snapshot returns the registrations, sorted by key.
func (b *Backend) snapshot() []*registration {
	b.mu.Lock()
	regs := make([]*registration, 0, len(b.regs))
	for _, r := range b.regs {
		regs = append(regs, r)
	}
	b.mu.Unlock()
	slices.SortFunc(regs, func(x, y *registration) int { return strings.Compare(x.key, y.key) })
	return regs
}

// syncAll runs syncOne on every registration (full) or on the marked ones,
// and stops at the first failure. A registration busy in Register or
// Deregister, which write or remove its key themselves, is skipped and
// left marked: Register holds it through its retries until its context
// ends, and the others' keys must not expire meanwhile.
func (b *Backend) syncAll(full bool) error {
	regs := b.snapshot()
	if len(regs) == 0 {
		return nil
	}
	// The renewals go straight to the bucket's subjects, which only an
	// open bucket takes: open it, or create it again, first.
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
	if !b.bucketOpen() {
		cancel()
		ctx, cancel = b.untilElected(b.ctx, b.cfg.RequestTimeout)
	}
	_, _, err := b.bucket(ctx)
	elected := context.Cause(ctx) == errLeaderElected
	cancel()
	if err != nil {
		if b.ctx.Err() != nil {
			return nil
		}
		if elected {
			err = fmt.Errorf("%w: %w", errLeaderElected, err)
		}
		return err
	}
	if full {
		// Renewals first, pipelined; what they cannot settle is marked
		// and looked at below.
		if err := b.renewAll(regs); err != nil {
			if b.ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	for _, r := range regs {
		if !r.check.Swap(false) {
			continue
		}
		if !r.mu.TryLock() {
			r.check.Store(true)
			continue
		}
		var err error
		if !r.gone {
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
			err = b.syncOneLocked(ctx, r)
			cancel()
		}
		r.mu.Unlock()
		if err != nil {
			if b.ctx.Err() != nil {
				return nil
			}
			r.check.Store(true)
			return err
		}
	}
	return nil
}

// renewWindow is how many renewals renewAll keeps in flight at once, and
// renewBytes how many bytes of them: together they bound what a pass
// queues on the connection ahead of the client's PINGs (and anything
// else), so that a pass over many (or large) keys on a slow link delays a
// PONG by about renewBytes' worth of the link, never a whole pass's worth,
// and the connection is not declared stale because renewals crowd it.
//
// Why a fixed 128 KiB is safe: the client declares the link stale once
// five PINGs a third of the TTL apart are unanswered, so a PONG has about
// 5×TTL/3 (1.7 s at MinTTL, 25 s at DefaultTTL) to come back; the window
// delays it by at most renewBytes at the link's rate plus a round trip,
// which fits for any link faster than about 80 KiB/s at MinTTL (5 KiB/s at
// DefaultTTL). TestRenewalWindowKeepsTheConnectionOnASlowerLink holds it
// at 160 KiB/s with a 2 s TTL, where a 1 MiB window lost the connection.
// What the window costs is throughput where the link is wide and far (a
// bandwidth-delay product above 128 KiB): renewals then go at 128 KiB, or
// 256 renewals, per round trip, such as 427 KiB/s and 850 renewals/s on a
// 300 ms round trip, which renews about 4 000 instances of 500 bytes
// every DefaultTTL/3: far more than a process registers. A window that
// grew and shrank on the acknowledgements' latency would gain throughput
// only there, and would take a stalled or loaded process's slow answers
// for a congested link.
const (
	renewWindow = 256
	renewBytes  = 128 << 10
)

// renewAll renews the keys of regs that this Backend holds, pipelined in
// a sliding window: up to renewWindow compare-and-set writes and
// renewBytes of them in flight, the next one waiting for the oldest to be
// answered when either bound is reached, so that a pass over many keys
// costs about one round trip per window rather than one per key, every
// key is renewed well within its TTL, and a pass never floods the
// connection. A registration busy in Register or Deregister is skipped,
// and one whose renewal finds another write in its way (or that this
// Backend does not hold) is marked for a look by syncOneLocked. It stops
// at the first failure other than a compare-and-set one, marking the
// registrations it did not settle.
func (b *Backend) renewAll(regs []*registration) error {
	type pending struct {
		r    *registration
		ack  jetstream.PubAckFuture
		sent time.Time
		size int
	}
	inflight := make([]pending, 0, min(len(regs), renewWindow))
	var failed error
	bytes := 0
	// settleOldest waits for the oldest write in flight, at most until
	// RequestTimeout after it was sent, and unlocks its registration.
	settleOldest := func() {
		p := inflight[0]
		inflight = inflight[1:]
		bytes -= p.size
		wait := time.NewTimer(time.Until(p.sent.Add(b.cfg.RequestTimeout)))
		defer wait.Stop()
		select {
		case ack := <-p.ack.Ok():
			p.r.rev = ack.Sequence
			b.stored(p.r, p.sent)
			b.setLocked(p.r, discovery.Status{State: discovery.StateRegistered})
		case err := <-p.ack.Err():
			p.r.check.Store(true)
			if !wrongSequence(err) && failed == nil {
				failed = err
			}
		case <-wait.C:
			p.r.check.Store(true)
			if failed == nil {
				failed = context.DeadlineExceeded
			}
		case <-b.ctx.Done():
			p.r.check.Store(true)
			if failed == nil {
				failed = b.ctx.Err()
			}
		}
		p.r.mu.Unlock()
	}
	for _, r := range regs {
		if failed != nil {
			r.check.Store(true)
			continue
		}
		if !r.mu.TryLock() {
			r.check.Store(true)
			continue
		}
		if r.gone || r.rev == 0 {
			if !r.gone {
				r.check.Store(true) // not held: look at what the bucket holds
			}
			r.mu.Unlock()
			continue
		}
		m := b.valueMsg(r)
		size := renewOverhead + len(m.Subject) + len(m.Data) + len(b.owner)
		for len(inflight) > 0 && (len(inflight) >= renewWindow || bytes+size > renewBytes) && failed == nil {
			settleOldest()
		}
		if failed != nil {
			r.check.Store(true)
			r.mu.Unlock()
			continue
		}
		sent := time.Now()
		ack, err := b.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(r.rev), jetstream.WithMsgTTL(b.cfg.TTL))
		if err != nil {
			r.check.Store(true)
			r.mu.Unlock()
			failed = err
			continue
		}
		inflight = append(inflight, pending{r, ack, sent, size})
		bytes += size
	}
	for len(inflight) > 0 {
		settleOldest()
	}
	return failed
}

// renewOverhead is about how many bytes a renewal costs on the wire
// besides its subject, value and owner: the HPUB line with its reply
// inbox, and the headers (owner, expected sequence, TTL).
const renewOverhead = 160

// syncOneLocked looks at what the bucket holds for r's key (renewals are
// renewAll's): this Backend's own write is kept (and adopted, if its reply
// was lost), a key another process wrote is left to it (conflict), a
// missing key is restored. r.mu is held.
func (b *Backend) syncOneLocked(ctx context.Context, r *registration) error {
	l, err := b.last(ctx, r.subject)
	if err != nil {
		return err
	}
	if l.seq != r.rev || !l.live || l.owner != b.owner {
		r.rechecks = 0
	}
	switch {
	case l.live && l.owner == b.owner && l.seq == r.rev:
		// Nothing changed, as far as the bucket shows yet.
		if r.rechecks < maxRechecks {
			r.rechecks++
			r.check.Store(true)
			b.pending.Store(true)
		}
		return nil
	case l.live && l.owner == b.owner:
		// This Backend's own write (one whose reply was lost, say).
		r.rev = l.seq
		if !l.sameValue(r.value) {
			seq, err := b.publish(ctx, r, l.seq)
			if err != nil {
				return b.raced(r, err)
			}
			r.rev = seq
		}
		b.setLocked(r, discovery.Status{State: discovery.StateRegistered})
	case l.live:
		// Another process wrote the key after this one: it owns it now.
		if r.state != discovery.StateConflict {
			b.log.Error("instance registered by another process; waiting for it to leave", "node", r.inst.Address, "key", r.key)
		}
		r.rev = 0
		r.expires.Store(0)
		b.setLocked(r, discovery.Status{
			State: discovery.StateConflict,
			Err:   fmt.Errorf("nats: %s written by another process: %w", r.key, discovery.ErrConflict),
		})
	default:
		// The key is gone: deleted, purged or expired.
		wasConflict := r.state == discovery.StateConflict
		if r.rev != 0 || !wasConflict {
			b.log.Warn("instance removed from NATS, restoring", "node", r.inst.Address, "key", r.key)
			b.setLocked(r, discovery.Status{
				State: discovery.StateLost,
				Err:   backendkit.Mark(fmt.Errorf("nats: %s removed from the bucket", r.key), discovery.ErrRemoved),
			})
		}
		seq, err := b.publish(ctx, r, l.seq)
		if err != nil {
			return b.raced(r, err)
		}
		r.rev = seq
		if wasConflict {
			b.log.Info("instance left by the other process, registered again", "node", r.inst.Address, "key", r.key)
		}
		b.setLocked(r, discovery.Status{State: discovery.StateRegistered})
	}
	return nil
}

// raced handles a failed write of syncOneLocked: a compare-and-set failure
// means another write came in between, so r is looked at again at once.
func (b *Backend) raced(r *registration, err error) error {
	if wrongSequence(err) {
		r.check.Store(true)
		select {
		case b.events <- nil:
		default:
		}
		return nil
	}
	return err
}

// retrying reports every registration as retrying and returns how many
// there are.
func (b *Backend) retrying(attempt int, delay time.Duration, cause error) int {
	n := 0
	for _, r := range b.snapshot() {
		// A registration busy in Register (waiting for the link, say)
		// reports its own state; the keeper does not wait for it.
		if !r.mu.TryLock() {
			n++
			continue
		}
		if !r.gone {
			n++
			b.setLocked(r, discovery.Status{
				State:   discovery.StateRetrying,
				Attempt: attempt,
				RetryIn: delay,
				Err:     fmt.Errorf("nats: keep registrations published: %w", unavailable(context.Background(), cause)),
			})
		}
		r.mu.Unlock()
	}
	return n
}
