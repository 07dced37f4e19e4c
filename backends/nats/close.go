package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Close implements discovery.Registrar: it stops renewing, purges every
// key this Backend holds at once (all purges in flight together, bounded
// by RequestTimeout; a key NATS does not get to purge expires with its
// TTL), stops every watcher and goroutine and closes the connection. It
// returns the failures to remove keys, joined, each naming its key and
// wrapping discovery.ErrUnavailable (unless NATS refused the removal); a
// second Close does nothing and returns nil.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() { err = errors.Join(b.drainOnClose(), b.close()) }) // drain.go
	return err
}

func (b *Backend) close() error {
	b.closing.Store(true)
	b.mu.Lock()
	b.closed = true
	regs := make([]*registration, 0, len(b.regs))
	for _, r := range b.regs {
		regs = append(regs, r)
	}
	b.mu.Unlock()
	slices.SortFunc(regs, func(x, y *registration) int { return strings.Compare(x.key, y.key) })

	b.cancel()
	b.wg.Wait()
	b.group.Close(nil)

	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
	defer cancel()
	if len(regs) > 0 {
		// A connection being made again (a server restarting) may be
		// back within RequestTimeout: wait for it rather than fail every
		// removal at once.
		for up, changed, _ := b.conn.get(); !up && !b.nc.IsClosed(); up, changed, _ = b.conn.get() {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
			}
			break
		}
	}
	type pending struct {
		r   *registration
		ack jetstream.PubAckFuture
	}
	var acks []pending
	var errs []error
	fail := func(r *registration, err error) {
		b.log.Warn("failed to remove an instance on close; it expires with its TTL", "node", r.inst.Address,
			"key", r.key, "ttl", b.cfg.TTL, "error", err)
		errs = append(errs, fmt.Errorf("nats: close: remove %s: %w", r.key, unavailable(context.Background(), err)))
	}
	for _, r := range regs {
		r.mu.Lock()
		if !r.gone && r.rev != 0 {
			ack, err := b.js.PublishMsgAsync(b.purgeMsg(r.subject), jetstream.WithExpectLastSequencePerSubject(r.rev),
				jetstream.WithMsgTTL(DefaultMarkerTTL))
			if err != nil {
				fail(r, err)
			} else {
				acks = append(acks, pending{r, ack})
			}
		}
		if !r.gone {
			b.forgetLocked(r)
		}
		r.mu.Unlock()
	}
	removed := 0
	for _, p := range acks {
		select {
		case <-p.ack.Ok():
			removed++
		case err := <-p.ack.Err():
			if wrongSequence(err) {
				// A write of this Backend's whose reply it never got
				// (a renewal Close cut short) may be the last one.
				if ok, err := b.purgeOwn(ctx, p.r.subject, p.r.rev); ok {
					removed++
				} else if err != nil {
					fail(p.r, err)
				}
			} else {
				fail(p.r, err)
			}
		case <-ctx.Done():
			fail(p.r, ctx.Err())
		}
	}
	if len(regs) > 0 {
		b.log.Info("removed instances", "instances", removed)
	}
	b.board.Close()
	b.nc.Close()
	return errors.Join(errs...)
}
