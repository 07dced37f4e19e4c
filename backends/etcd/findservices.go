package etcd

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
)

// FindServices implements discovery.OperatorView: it reports the services
// under the Backend's prefix as they appear. It
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
	// With the table locked and open: Close waits for the monitor.
	if !b.regs.startIfOpen(func() { b.conn.start(b.ctx, &b.wg) }) {
		return fmt.Errorf("etcd: find services: %w", discovery.ErrClosed)
	}
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

// probeEvery is how often FollowRegistry reads one key of etcd, to know
// that etcd still answers (a watch says nothing while etcd is away).
const probeEvery = time.Second

// FollowRegistry implements discovery.OperatorView: one read of every key
// under the prefix, then one watch from the revision after it, whatever
// the number of services. Each service's keys are decoded together, as
// Resolve decodes them, and a service is reported whole whenever one of
// its keys changes. From its first update on, while the watch is being
// opened as after, it reads one key every second (bounded by
// RequestTimeout); an etcd that does not answer is reported unreachable
// until it answers again (etcd's client opens the watch, or resumes it
// where it was, once etcd is back). It returns an error when the watch
// cannot go on (etcd compacted the revision it reached, the member
// lost its leader, the Backend was closed): calling it again reads the
// keys again.
//
// Its cost grows with the registry (one watch over the whole prefix, every
// write delivered): it is for an operator's tool or a server that follows
// the whole registry, not for applications.
func (b *Backend) FollowRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	if b.isClosed() {
		return fmt.Errorf("etcd: follow the registry: %w", discovery.ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel) // the Backend's Close ends it too
	defer stop()
	err := b.followRegistry(ctx, apply)
	switch {
	case b.isClosed():
		return fmt.Errorf("etcd: follow the registry: %w", discovery.ErrClosed)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("etcd: follow the registry under %s: %w", b.cfg.Prefix, err)
}

// followRegistry is FollowRegistry's pass.
func (b *Backend) followRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	prefix := b.cfg.Prefix + "/"
	lctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	resp, err := b.cli.Get(lctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("no answer to a read within %v: %w: %w", b.cfg.RequestTimeout, discovery.ErrUnavailable, err)
	}
	keys := make(map[string]map[string]*mvccpb.KeyValue) // service -> key -> its last value
	for _, kv := range resp.Kvs {
		if service, ok := b.serviceOfKey(prefix, kv.Key); ok {
			if keys[service] == nil {
				keys[service] = make(map[string]*mvccpb.KeyValue)
			}
			keys[service][string(kv.Key)] = kv
		}
	}
	u := discovery.RegistryUpdate{Reset: true}
	for _, service := range slices.Sorted(maps.Keys(keys)) {
		if set := b.leasedSet(service, keys[service]); len(set.Instances) > 0 {
			u.Services = append(u.Services, set)
		}
	}
	apply(u)

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// The watch is opened in a goroutine of its own: etcd's client does
	// not return from Watch until etcd has confirmed the watch, so an
	// etcd that stopped since the read above would hold the loop below,
	// and no probe would tell of the outage. events is nil until then.
	var events clientv3.WatchChan
	opened := make(chan clientv3.WatchChan, 1)
	// Probes: one read of a single key (the prefix itself) at a time,
	// each bounded by RequestTimeout; the loop below learns each result.
	probed := make(chan error)
	var probes sync.WaitGroup
	defer probes.Wait()
	defer cancel() // first: it ends the probes and the opening of the watch
	probes.Go(func() {
		opened <- b.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	})
	probes.Go(func() {
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(wctx, b.cfg.RequestTimeout)
			_, err := b.cli.Get(pctx, b.cfg.Prefix, clientv3.WithKeysOnly())
			pcancel()
			select {
			case probed <- err:
			case <-wctx.Done():
				return
			}
		}
	})
	unreachable := func() error {
		return fmt.Errorf("etcd did not answer within %v: %w", b.cfg.RequestTimeout, discovery.ErrUnavailable)
	}
	down := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case events = <-opened:
		case err := <-probed:
			switch {
			case err != nil && !down && ctx.Err() == nil:
				down = true
				apply(discovery.RegistryUpdate{Unreachable: unreachable()})
			case err == nil && down:
				down = false
				apply(discovery.RegistryUpdate{})
			}
		case wr, ok := <-events:
			if !ok {
				return errors.New("the watch ended")
			}
			if wr.CompactRevision != 0 {
				return fmt.Errorf("the watch fell behind compaction (revision %d)", wr.CompactRevision)
			}
			if err := wr.Err(); err != nil {
				return err
			}
			changed := make(map[string]bool)
			for _, ev := range wr.Events {
				service, ok := b.serviceOfKey(prefix, ev.Kv.Key)
				if !ok {
					continue
				}
				changed[service] = true
				if ev.Type == mvccpb.DELETE {
					delete(keys[service], string(ev.Kv.Key))
					if len(keys[service]) == 0 {
						delete(keys, service)
					}
					continue
				}
				if keys[service] == nil {
					keys[service] = make(map[string]*mvccpb.KeyValue)
				}
				keys[service][string(ev.Kv.Key)] = ev.Kv
			}
			if len(changed) == 0 {
				continue
			}
			u := discovery.RegistryUpdate{}
			for _, service := range slices.Sorted(maps.Keys(changed)) {
				u.Services = append(u.Services, b.leasedSet(service, keys[service]))
			}
			if down {
				u.Unreachable = unreachable()
			}
			apply(u)
		}
	}
}

// serviceOfKey returns the service of a key <prefix><service>/<rest>,
// if it names a valid one.
func (b *Backend) serviceOfKey(prefix string, key []byte) (string, bool) {
	service, rest, ok := strings.Cut(strings.TrimPrefix(string(key), prefix), "/")
	if !ok || rest == "" || discovery.ValidateName("Service", service) != nil {
		return "", false
	}
	return service, true
}

// leasedSet decodes the keys of service as Resolve does, each instance
// with the lease of its key.
func (b *Backend) leasedSet(service string, keys map[string]*mvccpb.KeyValue) discovery.ServiceSet {
	kvs := make([]*mvccpb.KeyValue, 0, len(keys))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		kvs = append(kvs, keys[k])
	}
	set := discovery.ServiceSet{Service: service}
	for _, in := range b.operatorSet(service, kvs) {
		li := discovery.LeasedInstance{Instance: in}
		if kv := keys[b.key(service, in.ID)]; kv != nil && kv.Lease != 0 {
			li.Lease = leaseName(clientv3.LeaseID(kv.Lease))
		}
		set.Instances = append(set.Instances, li)
	}
	return set
}
