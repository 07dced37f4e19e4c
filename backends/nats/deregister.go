package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/sethvargo/go-retry"
)

// Deregister implements discovery.Registrar. It removes the key now (a
// purge, which watchers see as a removal) if this Backend holds it, and
// stops renewing it; if another process has taken the key over, its
// instance stays. It returns an error wrapping discovery.ErrNotRegistered
// for an instance this Backend does not hold and discovery.ErrClosed after
// Close. If NATS cannot be reached the registration is forgotten all the
// same, and Deregister keeps trying within ctx (at once when the
// connection comes back, otherwise after each delay of Config.Retry), as
// discovery.Registrar.Deregister says. A Register of the instance still waiting through an
// outage is ended rather than waited for; if it was the instance's first,
// nothing was written and Deregister returns nil.
//
// Once called, Deregister is done whatever ctx does (as on etcd): the
// registration is forgotten and reported deregistered, and if ctx ends
// (or had ended) before the key is removed, the Backend removes it in the
// background (trying through an outage for up to RequestTimeout; the key
// expires with its TTL otherwise) and Deregister returns an error wrapping
// discovery.ErrUnavailable and ctx's error. A second Deregister of the instance meanwhile
// waits for that removal and returns its outcome.
func (b *Backend) Deregister(ctx context.Context, in discovery.Instance) error {
	k := in.Key()
	if k.ID == "" && in.Address != "" {
		k.ID = discovery.IDFromAddress(in.Address)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("nats: deregister: %w", discovery.ErrClosed)
	}
	r := b.regs[k]
	if r != nil {
		// This call removes r: a concurrent Deregister finds nothing, and
		// a Register starts afresh.
		delete(b.regs, k)
		if b.bySubject[r.subject] == r {
			delete(b.bySubject, r.subject)
		}
	}
	rm := b.removals[k]
	b.mu.Unlock()
	if r == nil {
		if rm != nil {
			return rm.wait(ctx, k)
		}
		return fmt.Errorf("nats: deregister %s: %w", k, discovery.ErrNotRegistered)
	}
	// End a Register of r that waits through an outage, which holds r.mu
	// until NATS is back or its own context ends.
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		// That Register was r's first and gave r up: nothing was written.
		return nil
	}
	b.forgetLocked(r)
	if r.rev == 0 {
		return nil
	}
	if ctx.Err() == nil {
		err := b.purgeThrough(ctx, r)
		if err == nil {
			b.log.Info("deregistered", "node", r.inst.Address, "key", r.key)
			return nil
		}
		if ctx.Err() == nil {
			// NATS refused the removal.
			b.log.Warn("failed to remove an instance; it expires with its TTL", "node", r.inst.Address, "key", r.key,
				"ttl", b.cfg.TTL, "error", err)
			return fmt.Errorf("nats: deregister %s: %w", k, err)
		}
	}
	// The caller gave up first (discovery.Registrar.Deregister): the key is
	// still removed, once NATS answers.
	b.removeLater(k, r)
	return fmt.Errorf("nats: deregister %s: the removal is not confirmed, the instance is removed in the background: %w: %w",
		k, discovery.ErrUnavailable, ctx.Err())
}

// purgeThrough removes r's key (purgeOwn), trying again through an outage,
// as claimLocked writes it: at once when the connection comes back, and
// otherwise after each delay of the retry policy, until the key is gone,
// NATS refuses the removal, or ctx ends. r.mu is held.
func (b *Backend) purgeThrough(ctx context.Context, r *registration) error {
	var bo retry.Backoff
	var last error
	for {
		_, changed, _ := b.conn.get()
		err := b.connected()
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
			_, err = b.purgeOwn(actx, r.subject, r.rev)
			cancel()
			if err == nil {
				return nil
			}
			err = unavailable(ctx, err)
		}
		if ctx.Err() != nil {
			if last == nil {
				last = discovery.ErrUnavailable
			}
			return fmt.Errorf("%w: %w", last, ctx.Err())
		}
		if !errors.Is(err, discovery.ErrUnavailable) {
			return err
		}
		last = err
		if bo == nil {
			bo = b.cfg.Retry.Backoff()
		}
		delay, _ := bo.Next()
		b.log.Debug("failed to remove an instance, will retry", "node", r.inst.Address, "key", r.key, "retry_in", delay, "error", err)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(delay):
		}
	}
}

// removal is a removal of a deregistered instance's key that outlives the
// Deregister whose context ended.
type removal struct {
	done chan struct{} // closed when it is over
	err  error         // its outcome, set before done is closed
}

// wait waits for the removal to be over, or for ctx, and returns its
// outcome as Deregister's.
func (rm *removal) wait(ctx context.Context, k discovery.Key) error {
	select {
	case <-rm.done:
		return rm.err
	case <-ctx.Done():
		return fmt.Errorf("nats: deregister %s: %w", k, ctx.Err())
	}
}

// removeLater removes r's key (at the sequence this Backend last wrote, so
// that a later Register's write is never removed) on a goroutine of the
// Backend, bounded by RequestTimeout; Close waits for it.
func (b *Backend) removeLater(k discovery.Key, r *registration) {
	rm := &removal{done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		// Close has started; the key expires with its TTL.
		b.mu.Unlock()
		return
	}
	b.removals[k] = rm
	b.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
		defer cancel()
		// Through an outage within RequestTimeout; purgeOwn leaves a key
		// written since (another process, a new Register) alone.
		r.mu.Lock()
		err := b.purgeThrough(ctx, r)
		r.mu.Unlock()
		switch {
		case err == nil:
			b.log.Info("deregistered", "node", r.inst.Address, "key", r.key)
		default:
			b.log.Warn("failed to remove an instance; it expires with its TTL", "node", r.inst.Address, "key", r.key,
				"ttl", b.cfg.TTL, "error", err)
			err = fmt.Errorf("nats: deregister %s: %w", k, unavailable(context.Background(), err))
		}
		rm.err = err
		b.mu.Lock()
		if b.removals[k] == rm {
			delete(b.removals, k)
		}
		b.mu.Unlock()
		close(rm.done)
	})
	b.mu.Unlock()
}
