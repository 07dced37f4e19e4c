package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	natsgo "github.com/nats-io/nats.go"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// registration is one instance this Backend keeps published. Its fields
// but check are guarded by mu, which is held across the requests that
// write its key, so that writes of one key never overlap.
type registration struct {
	mu sync.Mutex
	// ctx ends when Deregister or Close starts, or once r is forgotten;
	// it ends a Register of r that waits through an outage, so that
	// Deregister does not wait for it. Set before r is shared.
	ctx     context.Context
	cancel  context.CancelFunc
	inst    discovery.Instance
	key     string // bucket key
	subject string // "$KV.<bucket>.<key>"
	value   []byte
	rev     uint64 // sequence of this Backend's last write of the key; 0 when it does not hold it
	// expires is when NATS expires the key without another renewal, as
	// of this Backend's last stored write (Unix nanoseconds); 0 when this
	// Backend does not hold the key. Read without mu, by BackendFacts.
	expires atomic.Int64
	state   discovery.State
	sub     *natsgo.Subscription
	gone    bool // deregistered or closed, or abandoned
	// abandoned: gone because the Register that created it gave up (its
	// context ended) rather than by Deregister or Close; a Register that
	// waited for it starts afresh.
	abandoned bool
	check     atomic.Bool // another process wrote the key: look at it
	// rechecks counts looks, after an event, that found the bucket still
	// holding this Backend's last write: the event's message reaches
	// subscribers before JetStream has stored it, so the keeper looks
	// again shortly (see recheckDelay).
	rechecks int
}

// setLocked moves r to st.State and reports st for r's instance; r.mu is
// held.
func (b *Backend) setLocked(r *registration, st discovery.Status) {
	r.state = st.State
	st.Instance = r.inst
	b.board.Set(st)
}

// Register implements discovery.Registrar. It validates in (an error wraps
// discovery.ErrInvalidInstance and names the field), writes its key with
// the TTL and returns once JetStream has stored it; the Backend then renews
// it about every TTL/3. The later writer owns a key: if another process
// holds the same service and ID, this write takes it over and the other
// process reports discovery.StateConflict. While NATS is unreachable it
// keeps trying (in discovery.StateRegistering) until ctx ends; then it
// returns ctx's error and a new registration leaves nothing behind. After
// Close, or if Close or a Deregister of the instance ends that wait, it
// returns an error wrapping discovery.ErrClosed.
func (b *Backend) Register(ctx context.Context, in discovery.Instance) error {
	in, err := in.Normalize()
	if err != nil {
		return fmt.Errorf("nats: register: %w", err)
	}
	key, err := kvKey(in.Key())
	if err != nil {
		return fmt.Errorf("nats: register: %w", err)
	}
	value, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("nats: register %s: %w", in.Key(), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: register %s: %w", in.Key(), err)
	}
	for {
		again, err := b.register(ctx, in, key, value)
		if !again {
			return err
		}
	}
}

// register is one try of Register. It returns again when the
// registration it waited for was abandoned by the Register that created
// it (that call's context ended): this call then starts afresh and owns
// the outcome.
func (b *Backend) register(ctx context.Context, in discovery.Instance, key string, value []byte) (again bool, _ error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, fmt.Errorf("nats: register: %w", discovery.ErrClosed)
	}
	r := b.regs[in.Key()]
	isNew := r == nil
	if isNew {
		r = &registration{inst: in, key: key, subject: b.prefix + key, value: value}
		r.ctx, r.cancel = context.WithCancel(b.ctx)
		// Locked before it is shared, so that no one (the keeper) looks at
		// it before this Register has written it; this never waits.
		r.mu.Lock()
		b.regs[in.Key()] = r
		b.bySubject[r.subject] = r
	}
	b.mu.Unlock()

	if !isNew {
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.gone {
		if r.abandoned && ctx.Err() == nil {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("nats: register %s: %w", in.Key(), err)
		}
		return false, fmt.Errorf("nats: register %s: %w", in.Key(), b.stoppedErr())
	}
	if isNew {
		b.setLocked(r, discovery.Status{State: discovery.StateRegistering})
		// Not under b.mu: subscribing waits for the NATS client's lock,
		// which a reconnection attempt holds for up to DialTimeout.
		sub, err := b.nc.ChanSubscribe(r.subject, b.events)
		if err != nil {
			r.abandoned = true
			b.forgetLocked(r)
			return false, fmt.Errorf("nats: register %s: %w", in.Key(), unavailable(context.Background(), err))
		}
		r.sub = sub
	}
	prevInst, prevValue := r.inst, r.value
	r.inst, r.value = in, value
	if err := b.claimLocked(ctx, r); err != nil {
		if isNew {
			b.abandonLocked(r)
		} else {
			r.inst, r.value = prevInst, prevValue
		}
		return false, fmt.Errorf("nats: register %s: %w", in.Key(), unavailable(ctx, err))
	}
	b.setLocked(r, discovery.Status{State: discovery.StateRegistered})
	b.log.Info("registered", "node", in.Address, "key", key)
	return false, nil
}

// claimLocked writes r's key whoever holds it (the later writer wins). As
// etcd's Register does, it keeps trying through an outage, with the retry
// policy and at once when the connection comes back, until the write is
// stored, ctx ends or Close starts.
func (b *Backend) claimLocked(ctx context.Context, r *registration) error {
	// The waits end with ctx, and with Close and Deregister (r.ctx).
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()
	// Subscribed before the first attempt, so that a connection that
	// drops or comes back during an attempt ends the next wait at once.
	wake, unsubscribe := b.conn.changes.Subscribe()
	defer unsubscribe()
	recreated := false
	err := b.cfg.Retry.Do(wctx, func(wctx context.Context) error {
		if err := b.connected(); err != nil {
			return err
		}
		err := b.attemptLocked(wctx, r)
		// A bucket found gone is opened, or created, again at once.
		if b.checkBucket(err) && !recreated {
			recreated = true
			err = b.attemptLocked(wctx, r)
		}
		if errors.Is(err, ErrBucketSettings) {
			return retry.Permanent(err)
		}
		return err
	}, retry.OnFailure(func(f retry.Failure) {
		b.retries.Add(1)
		b.log.Debug("failed to register, will retry", "node", r.inst.Address, "key", r.key, "retry_in", f.Delay, "error", f.Err)
	}), retry.WakeOn(wake))
	switch {
	case err == nil, ctx.Err() != nil:
		return err
	case r.ctx.Err() != nil:
		return b.stoppedErr()
	}
	return err
}

// attemptLocked is one attempt of claimLocked, bounded by RequestTimeout.
func (b *Backend) attemptLocked(ctx context.Context, r *registration) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	return b.writeLocked(ctx, r)
}

// stoppedErr is claimLocked's error once Close or Deregister has ended
// it.
func (b *Backend) stoppedErr() error {
	if b.ctx.Err() != nil {
		return fmt.Errorf("closed while registering: %w", discovery.ErrClosed)
	}
	return fmt.Errorf("deregistered meanwhile: %w", discovery.ErrClosed)
}

// writeLocked makes one attempt at writing r's key whoever holds it: one
// unconditional write, as a raw key-value Put, since the later writer of a
// key owns it and there is nothing to compare. (Renewals and restores, by
// the keeper, are compare-and-sets; a registration only takes a key over
// here.) Its sequence becomes r.rev, what the next renewal expects.
func (b *Backend) writeLocked(ctx context.Context, r *registration) error {
	// The bucket must exist before its subjects take writes; this opens
	// (or creates) it once, when New could not.
	if _, _, err := b.bucket(ctx); err != nil {
		return err
	}
	seq, err := b.write(ctx, r)
	if err != nil {
		return err
	}
	r.rev = seq
	return nil
}

// abandonLocked forgets r, a new registration whose first write failed,
// and removes its key if the write landed after all.
func (b *Backend) abandonLocked(r *registration) {
	r.abandoned = b.ctx.Err() == nil && r.ctx.Err() == nil // neither Close nor Deregister ended it
	if b.connected() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
		if l, err := b.last(ctx, r.subject); err == nil && l.live && l.owner == b.owner {
			_ = b.purge(ctx, r.subject, l.seq)
		}
		cancel()
	}
	b.forgetLocked(r)
}

// forgetLocked drops r from the Backend's maps and stops its own-key
// subscription, and reports it deregistered.
func (b *Backend) forgetLocked(r *registration) {
	b.mu.Lock()
	if b.regs[r.inst.Key()] == r {
		delete(b.regs, r.inst.Key())
	}
	if b.bySubject[r.subject] == r {
		delete(b.bySubject, r.subject)
	}
	b.mu.Unlock()
	r.gone = true
	r.cancel()
	r.expires.Store(0)
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
	b.setLocked(r, discovery.Status{State: discovery.StateDeregistered})
}
