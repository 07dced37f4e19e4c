package etcd

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
)

// FindServices reports the services under the Backend's prefix as they
// appear, for an operator's view of the whole registry (roster ui). It
// reads the keys under the prefix (one keys-only range read, bounded by
// RequestTimeout) and calls found with every service that has a key, once
// each, sorted, and possibly none; then, from the revision of that read
// on, it calls found with the services of the keys written under the
// prefix, once per batch of events etcd sends. found may be given a service
// more than once, and is called from FindServices's goroutine.
//
// Through an outage it waits: etcd's watch resumes from the revision it
// reached, and once etcd is back FindServices checks that etcd's history
// is still the one it read (see history.go); if etcd was wiped or
// replaced meanwhile, it reads the keys again and calls found with every
// service of the new history. It returns ctx's error when ctx ends, and another error when it
// cannot read the keys or cannot go on from where it was (etcd compacted
// that revision, the member lost its leader, the Backend was closed):
// calling it again reads the keys again.
//
// Its cost grows with the registry (one watch over the whole prefix, every
// write delivered): it is for one operator's tool, not for applications,
// which watch the services they use (Watch).
func (b *Backend) FindServices(ctx context.Context, found func(services []string)) error {
	b.regs.mu.Lock()
	if b.regs.closed {
		b.regs.mu.Unlock()
		return fmt.Errorf("etcd: find services: %w", discovery.ErrClosed)
	}
	// Under b.regs.mu, with the Backend open: Close waits for the monitor.
	b.conn.start(b.ctx, &b.wg)
	b.regs.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel) // the Backend's Close ends it too
	defer stop()

	prefix := b.cfg.Prefix + "/"
	back := b.conn.reconnections()
	for {
		again, err := b.findFrom(ctx, prefix, found, &back)
		if !again {
			return err
		}
	}
}

// findFrom is one pass of FindServices: it reads the keys under prefix with
// the history key, then follows the writes. It returns again once etcd's
// history is no longer the one it read (see history.go), so that
// FindServices reads the keys of the new one.
func (b *Backend) findFrom(ctx context.Context, prefix string, found func([]string), back *<-chan struct{}) (again bool, err error) {
	lctx, lcancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	resp, err := b.cli.Txn(lctx).Then(
		clientv3.OpGet(b.historyPath()),
		clientv3.OpGet(prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	var history string
	if err == nil {
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			history = string(kvs[0].Value)
		} else {
			history, err = b.markHistory(lctx)
		}
	}
	lcancel()
	if err != nil {
		return false, b.findError(ctx, err)
	}
	kvs := resp.Responses[1].GetResponseRange().Kvs
	found(servicesOf(prefix, func(yield func([]byte) bool) {
		for _, kv := range kvs {
			if !yield(kv.Key) {
				return
			}
		}
	}))
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	events := b.cli.Watch(wctx, prefix, clientv3.WithPrefix(),
		clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterDelete())
	for {
		select {
		case <-*back:
			// Back from an outage: etcd's client resumes the watch from
			// the revision reached, which a wiped etcd may hold with
			// other data.
			epoch := *back
			*back = b.conn.reconnections()
			h, err := b.history(ctx, epoch)
			if err != nil {
				return false, b.findError(ctx, err)
			}
			if h != history {
				b.log.Info("etcd's history changed (wiped or replaced), reading the services again")
				return true, nil
			}
			continue
		case wr, ok := <-events:
			if !ok {
				return false, b.findError(ctx, errors.New("watch ended"))
			}
			if err := wr.Err(); err != nil {
				return false, b.findError(ctx, err)
			}
			if s := servicesOf(prefix, func(yield func([]byte) bool) {
				for _, ev := range wr.Events {
					if !yield(ev.Kv.Key) {
						return
					}
				}
			}); len(s) > 0 {
				found(s)
			}
		}
	}
}

// findError is the error FindServices returns for err.
func (b *Backend) findError(ctx context.Context, err error) error {
	switch {
	case b.isClosed():
		return fmt.Errorf("etcd: find services: %w", discovery.ErrClosed)
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("etcd: find services under %s: %w", b.cfg.Prefix, err)
	}
}

// servicesOf returns the services of the keys <prefix><service>/<id>
// with a valid service and ID, sorted, each once.
func servicesOf(prefix string, keys iter.Seq[[]byte]) []string {
	var out []string
	for key := range keys {
		service, id, ok := strings.Cut(strings.TrimPrefix(string(key), prefix), "/")
		if ok && discovery.ValidateName("Service", service) == nil && discovery.ValidateName("ID", id) == nil {
			out = append(out, service)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
