package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/retry"
)

// errWatchEnded: etcd's watch channel closed without an error.
var errWatchEnded = errors.New("etcd watch ended")

// startFollow is the start hook of the Backend's watch group: when a
// service gets its first Watcher it starts the goroutine that keeps the
// service's feed up to date, and returns the func that cancels it, which
// the group runs when the last Watcher has stopped. The group runs it from
// Watch, which holds b.regs.mu and has checked that the Backend is open, so the
// goroutine never races with Close's wait.
func (b *Backend) startFollow(service string, feed *backendkit.Feed) (stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	b.wg.Add(1)
	go b.follow(ctx, service, feed)
	b.conn.start(b.ctx, &b.wg)
	return cancel
}

// servicePrefix is the prefix of a service's keys, with its trailing slash
// so that "pay" does not match "payments".
func (b *Backend) servicePrefix(service string) string {
	return b.cfg.Prefix + "/" + service + "/"
}

// Resolve implements discovery.Resolver with one range read of the
// service's keys: linearizable unless Config.SerializableReads is set.
func (b *Backend) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, err
	}
	if b.isClosed() {
		return nil, fmt.Errorf("etcd: resolve %s: %w", service, discovery.ErrClosed)
	}
	set, _, err := b.list(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("etcd: resolve %s: %w", service, err)
	}
	return set, nil
}

func (b *Backend) isClosed() bool {
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	return b.regs.closed
}

// list reads the service's instances and the revision they were read at.
func (b *Backend) list(ctx context.Context, service string) ([]discovery.Instance, int64, error) {
	set, rev, _, err := b.listFrom(ctx, service)
	return set, rev, err
}

// listFrom is list that also returns the ID of the cluster that answered.
func (b *Backend) listFrom(ctx context.Context, service string) ([]discovery.Instance, int64, uint64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if b.cfg.SerializableReads {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := b.cli.Get(ctx, b.servicePrefix(service), opts...)
	if err != nil {
		return nil, 0, 0, err
	}
	set := make([]discovery.Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if in, ok := b.decode(service, kv); ok {
			set = append(set, in)
		}
	}
	return discovery.NormalizeSet(set), resp.Header.Revision, resp.Header.ClusterId, nil
}

// decode turns a key-value under the service's prefix into an instance,
// skipping (with a warning) a value that is not a valid instance of that
// service stored under its own ID: someone else wrote it. The key must be
// exactly <Prefix>/<service>/<id> with the value's ID, which must not be
// empty: Instance.Validate accepts an empty ID, which Register derives from
// the address, but a stored instance always has its ID, and an empty one
// would match the key <Prefix>/<service>/ itself.
func (b *Backend) decode(service string, kv *mvccpb.KeyValue) (discovery.Instance, bool) {
	id := strings.TrimPrefix(string(kv.Key), b.servicePrefix(service))
	in, err := decodeInstance(service, id, kv.Value)
	if err != nil {
		if b.skipped.First(string(kv.Key), kv.ModRevision) { // once per revision, not per read
			b.log.Warn("skipping a value that is not a valid instance", "key", string(kv.Key),
				"revision", kv.ModRevision, "error", err)
		}
		return discovery.Instance{}, false
	}
	return in, true
}

// Watch implements discovery.Resolver. Watchers of one service share one
// etcd watch, which lists the service at a revision R, then watches from
// R+1, resumes from the last revision it saw after any fault, and lists
// again only if that revision was compacted or etcd's history no longer
// holds it. The shared watch lives until its last Watcher stops or the
// Backend closes; the Watcher returned lives until Stop or until ctx
// ends, whichever comes first.
func (b *Backend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	if b.regs.closed {
		return nil, fmt.Errorf("etcd: watch %s: %w", service, discovery.ErrClosed)
	}
	// The group holds one feed per service; a service's first Watcher
	// starts its etcd watch (startFollow), under b.regs.mu.
	return b.watches.Watch(ctx, service, nil), nil
}

// follow keeps feed up to date with the service's instances until ctx
// ends. It never gives up on a transient fault. It lists the service once,
// then watches from the revision after the list and, after a fault,
// resumes from the revision it reached: it lists again only when that
// revision is gone, compacted or absent from etcd's history (a restored
// or wiped cluster: another cluster ID, or a current revision below the
// one reached). A failed list fails the feed with discovery.ErrUnavailable.
// After a reconnection it re-establishes its watch and, once etcd has
// confirmed it from the revision reached, publishes the current set again,
// which tells the watchers the set is fresh without a range read.
func (b *Backend) follow(ctx context.Context, service string, feed *backendkit.Feed) {
	defer b.wg.Done()
	prefix := b.servicePrefix(service)
	backoff := b.cfg.Retry.Backoff()
	pause := func(err error) bool {
		d, _ := backoff.Next()
		b.log.Debug("service watch interrupted, resuming", "service", service, "retry_in", d, "error", err)
		return retry.Sleep(ctx, d, nil) == nil
	}
	var (
		current map[string]discovery.Instance // by etcd key
		rev     int64                         // next revision to watch from; 0: list first
		cluster uint64                        // ID of the cluster the list came from
		back    = b.conn.reconnections()      // closed once the connection is back after a failure
	)
	publish := func() {
		set := make([]discovery.Instance, 0, len(current))
		for _, in := range current {
			set = append(set, in)
		}
		feed.Publish(set)
	}
	for ctx.Err() == nil {
		if rev == 0 {
			lctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
			set, at, id, err := b.listFrom(lctx, service)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				feed.Fail(fmt.Errorf("list %s: %w", service, err))
				if !pause(err) {
					return
				}
				continue
			}
			current = make(map[string]discovery.Instance, len(set))
			for _, in := range set {
				current[prefix+in.ID] = in
			}
			feed.Publish(set)
			rev, cluster = at+1, id
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		var err error
		// created: etcd confirmed this watch, so its header tells whether
		// rev is still in etcd's history.
		created := false
		// pending: changes applied to current but not yet published. They
		// are published once no further response is ready, so that a burst
		// (a whole fleet coming back) costs the watchers one set per
		// burst, not one per response.
		pending := false
		events := b.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithCreatedNotify())
	watching:
		for {
			var resp clientv3.WatchResponse
			var ok bool
			if pending {
				select {
				case resp, ok = <-events:
				default:
					publish()
					pending = false
					continue
				}
			} else {
				select {
				case resp, ok = <-events:
				case <-back:
					// Back from an outage: watch again from the revision
					// reached, and publish the set once etcd confirms it.
					back = b.conn.reconnections()
					err = nil
					break watching
				}
			}
			if !ok {
				err = errWatchEnded
				break watching
			}
			if resp.CompactRevision != 0 {
				b.log.Info("service watch fell behind compaction, listing again",
					"service", service, "compact_revision", resp.CompactRevision)
				rev, err = 0, nil
				break watching
			}
			if err = resp.Err(); err != nil {
				break watching
			}
			if h := resp.Header; h.ClusterId != cluster || h.Revision < rev-1 {
				b.log.Info("etcd no longer holds the revision the service watch reached, listing again",
					"service", service, "revision", rev-1, "etcd_revision", h.Revision,
					"cluster", cluster, "etcd_cluster", h.ClusterId)
				rev, err = 0, nil
				break watching
			}
			backoff = b.cfg.Retry.Backoff()
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				if ev.Type == mvccpb.DELETE {
					delete(current, key)
				} else if in, ok := b.decode(service, ev.Kv); ok {
					current[key] = in
				} else {
					delete(current, key)
				}
				rev = ev.Kv.ModRevision + 1
			}
			if len(resp.Events) > 0 || (resp.Created && !created) {
				// Publishing after a fault tells the watchers their set
				// is fresh, even when it did not change.
				pending = true
			}
			created = created || resp.Created
		}
		if pending {
			publish() // what was applied before the watch ended
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			if !pause(err) {
				return
			}
		}
	}
}
