package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// startFollow is the start hook of the Backend's watch group: when a
// service gets its first Watcher it starts the goroutine that keeps the
// service's feed up to date, and returns the func that cancels it, which
// the group runs when the last Watcher has stopped. The group runs it from
// Watch, which holds b.mu and has checked that the Backend is open, so the
// goroutine never races with Close's wait.
func (b *Backend) startFollow(service string, feed *discovery.Feed) (stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	b.wg.Add(1)
	go b.follow(ctx, service, feed)
	b.startMonitor()
	return cancel
}

// resyncAll makes every service watch list its service again: the
// connection is back after a failure. Each follow goroutine notices that
// the channel it took before its last list is closed.
func (b *Backend) resyncAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.reconnected)
	b.reconnected = make(chan struct{})
}

// reconnections returns a channel that is closed the next time the
// connection comes back after a failure.
func (b *Backend) reconnections() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reconnected
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
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// list reads the service's instances and the revision they were read at.
func (b *Backend) list(ctx context.Context, service string) ([]discovery.Instance, int64, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if b.cfg.SerializableReads {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := b.cli.Get(ctx, b.servicePrefix(service), opts...)
	if err != nil {
		return nil, 0, err
	}
	set := make([]discovery.Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if in, ok := b.decode(service, kv); ok {
			set = append(set, in)
		}
	}
	return discovery.NormalizeSet(set), resp.Header.Revision, nil
}

// decode turns a key-value under the service's prefix into an instance,
// skipping (with a warning) a value that is not a valid instance of that
// service stored under its own ID: someone else wrote it. The key must be
// exactly <Prefix>/<service>/<id> with the value's ID, which must not be
// empty: Instance.Validate accepts an empty ID, which Register derives from
// the address, but a stored instance always has its ID, and an empty one
// would match the key <Prefix>/<service>/ itself.
func (b *Backend) decode(service string, kv *mvccpb.KeyValue) (discovery.Instance, bool) {
	var in discovery.Instance
	id := strings.TrimPrefix(string(kv.Key), b.servicePrefix(service))
	err := json.Unmarshal(kv.Value, &in)
	if err == nil {
		err = in.Validate()
	}
	if err == nil {
		// Validate lets an empty ID through; the stored one must be a
		// name, which also keeps '/' out of the key's last segment.
		err = discovery.ValidateName("ID", in.ID)
	}
	if err == nil && (in.Service != service || in.ID != id) {
		err = fmt.Errorf("holds instance %s/%s", in.Service, in.ID)
	}
	if err != nil {
		b.log.Warn("skipping a value that is not a valid instance", "key", string(kv.Key),
			"revision", kv.ModRevision, "error", err)
		return discovery.Instance{}, false
	}
	return in, true
}

// Watch implements discovery.Resolver. Watchers of one service share one
// etcd watch, which lists the service at a revision R, then watches from
// R+1, resumes from the last revision it saw after any fault, and lists
// again if that revision was compacted. The watch lives until its last
// Watcher stops or the Backend closes; ctx is not used after Watch returns.
func (b *Backend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("etcd: watch %s: %w", service, discovery.ErrClosed)
	}
	// The group holds one feed per service; a service's first Watcher
	// starts its etcd watch (startFollow), under b.mu.
	return b.watches.Watch(ctx, service, nil), nil
}

// follow keeps feed up to date with the service's instances until ctx
// ends. It never gives up on a transient fault.
func (b *Backend) follow(ctx context.Context, service string, feed *discovery.Feed) {
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
		back    <-chan struct{}               // closed once the connection is back after a failure
	)
	for ctx.Err() == nil {
		if rev == 0 {
			// A reconnection from now on calls for another list.
			back = b.reconnections()
			lctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
			set, at, err := b.list(lctx, service)
			cancel()
			if err != nil {
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
			rev = at + 1
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		var err error
		events := b.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	watching:
		for {
			var resp clientv3.WatchResponse
			var ok bool
			select {
			case resp, ok = <-events:
			case <-back:
				// Back from an outage: list again, which also tells the
				// watchers their set is fresh.
				rev, err = 0, nil
				break watching
			}
			if !ok {
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
			if len(resp.Events) > 0 {
				set := make([]discovery.Instance, 0, len(current))
				for _, in := range current {
					set = append(set, in)
				}
				feed.Publish(set)
			}
		}
		cancel()
		if err != nil || (rev != 0 && ctx.Err() == nil) {
			if !pause(err) {
				return
			}
		}
	}
}
