package nats

import (
	"context"
	"fmt"

	"github.com/roster-sd/roster/discovery"
)

// Deregister implements discovery.Registrar. It removes the key now (a
// purge, which watchers see as a removal) if this Backend holds it, and
// stops renewing it; if another process has taken the key over, its
// instance stays. It returns an error wrapping discovery.ErrNotRegistered
// for an instance this Backend does not hold and discovery.ErrClosed after
// Close. If NATS cannot be reached the registration is forgotten all the
// same, the error wraps discovery.ErrUnavailable, and the key expires
// within the TTL. A Register of the instance still waiting through an
// outage is ended rather than waited for; if it was the instance's first,
// nothing was written and Deregister returns nil.
//
// Once called, Deregister is done whatever ctx does (as on etcd): the
// registration is forgotten and reported deregistered, and if ctx ends
// (or had ended) before the key is removed, the Backend removes it in the
// background (one attempt bounded by RequestTimeout) and Deregister
// returns ctx's error. A second Deregister of the instance meanwhile
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
		_, err := b.purgeOwn(ctx, r.subject, r.rev)
		if err == nil {
			b.log.Info("deregistered", "node", r.inst.Address, "key", r.key)
			return nil
		}
		if ctx.Err() == nil {
			b.log.Warn("failed to remove an instance; it expires with its TTL", "node", r.inst.Address, "key", r.key,
				"ttl", b.cfg.TTL, "error", err)
			return fmt.Errorf("nats: deregister %s: %w", k, unavailable(ctx, err))
		}
	}
	// The caller gave up first: the key is still removed.
	b.removeLater(k, r)
	return fmt.Errorf("nats: deregister %s: %w (the instance is removed in the background)", k, ctx.Err())
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
		err := b.purge(ctx, r.subject, r.rev)
		switch {
		case err == nil:
			b.log.Info("deregistered", "node", r.inst.Address, "key", r.key)
		case wrongSequence(err):
			err = nil // written since (another process, a new Register): not this removal's
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
