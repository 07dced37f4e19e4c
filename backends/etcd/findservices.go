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
// reached. It returns ctx's error when ctx ends, and another error when it
// cannot read the keys or cannot go on from where it was (etcd compacted
// that revision, the member lost its leader, the Backend was closed):
// calling it again reads the keys again.
//
// Its cost grows with the registry (one watch over the whole prefix, every
// write delivered): it is for one operator's tool, not for applications,
// which watch the services they use (Watch).
func (b *Backend) FindServices(ctx context.Context, found func(services []string)) error {
	if b.isClosed() {
		return fmt.Errorf("etcd: find services: %w", discovery.ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel) // the Backend's Close ends it too
	defer stop()

	prefix := b.cfg.Prefix + "/"
	lctx, lcancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	resp, err := b.cli.Get(lctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	lcancel()
	if err != nil {
		return b.findError(ctx, err)
	}
	found(servicesOf(prefix, func(yield func([]byte) bool) {
		for _, kv := range resp.Kvs {
			if !yield(kv.Key) {
				return
			}
		}
	}))
	events := b.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(),
		clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterDelete())
	for wr := range events {
		if err := wr.Err(); err != nil {
			return b.findError(ctx, err)
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
	return b.findError(ctx, errors.New("watch ended"))
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
