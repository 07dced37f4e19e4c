package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/maintkit"
)

// Operators' maintenance overrides (discovery.Maintainer), stored beside a
// service's instances:
//
//	<Prefix>/<service>/~maint       the whole service
//	<Prefix>/<service>/~maint/<id>  one instance, registered or not
//
// An instance ID cannot hold '~': every key under <Prefix>/<service>/
// whose remainder starts with '~' is roster's own and not an instance, and
// readers skip the ones they do not know without a warning. The service's
// prefix watch sees overrides at no extra cost. An override with a
// duration is attached to a lease of its own with that TTL (in whole
// seconds, rounded up), so etcd ends it: note that etcd restarts a lease's
// TTL in full when it restarts or elects a new leader, unless lease
// checkpointing is on.

var _ discovery.Maintainer = (*Backend)(nil)

// maintKey returns the key of target's override.
func (b *Backend) maintKey(target discovery.Key) string {
	k := b.servicePrefix(target.Service) + "~" + maintkit.Name
	if target.ID != "" {
		k += "/" + target.ID
	}
	return k
}

// decodeReserved decodes a key of service that is not an instance's: the
// remainder of the key after the service prefix starts with '~'. It
// returns reserved false for any other key. An override decodes into the
// entry that carries it to maintkit.Merge (ok true); a reserved key this
// version does not know, or an invalid override, is skipped (ok false),
// the latter with a warning once per revision.
func (b *Backend) decodeReserved(service string, kv *mvccpb.KeyValue) (in discovery.Instance, ok, reserved bool) {
	rest, _ := strings.CutPrefix(string(kv.Key), b.servicePrefix(service))
	if !strings.HasPrefix(rest, "~") {
		return discovery.Instance{}, false, false
	}
	target, isMaint := maintTarget(service, rest)
	if !isMaint {
		return discovery.Instance{}, false, true
	}
	m, err := maintkit.Decode(target, kv.Value)
	if err != nil {
		if b.skipped.First(string(kv.Key), kv.ModRevision) {
			b.log.Warn("skipping a value that is not a valid maintenance override", "key", string(kv.Key),
				"revision", kv.ModRevision, "error", err)
		}
		return discovery.Instance{}, false, true
	}
	return maintkit.Entry(m), true, true
}

// maintTarget returns the target of the override stored at the key whose
// remainder after the service prefix is rest: "~maint" or "~maint/<id>".
func maintTarget(service, rest string) (discovery.Key, bool) {
	name := "~" + maintkit.Name
	if rest == name {
		return discovery.Key{Service: service}, true
	}
	id, ok := strings.CutPrefix(rest, name+"/")
	if !ok || discovery.ValidateName("ID", id) != nil {
		return discovery.Key{}, false
	}
	return discovery.Key{Service: service, ID: id}, true
}

// isReservedKey reports whether the key, under the Backend's prefix, is a
// key of a service that is not an instance: <Prefix>/<service>/~...
func (b *Backend) isReservedKey(key string) bool {
	rest, ok := strings.CutPrefix(key, b.cfg.Prefix+"/")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	return ok && strings.HasPrefix(rest, "~")
}

// SetMaintenance implements discovery.Maintainer: one put of the override's
// key, with a lease of d's TTL when d is not 0. An override it replaces
// loses its lease, which is revoked.
func (b *Backend) SetMaintenance(ctx context.Context, target discovery.Key, reason string, d time.Duration) error {
	if err := discovery.ValidateMaintenance(target, reason, d); err != nil {
		return fmt.Errorf("etcd: set maintenance: %w", err)
	}
	if b.isClosed() {
		return fmt.Errorf("etcd: set maintenance of %s: %w", target, discovery.ErrClosed)
	}
	now := time.Now()
	m := discovery.Maintenance{Service: target.Service, ID: target.ID, Reason: reason, Since: now}
	var opts []clientv3.OpOption
	var lease clientv3.LeaseID
	if d > 0 {
		m.Until = now.Add(d)
		ttl := int64((d + time.Second - 1) / time.Second)
		resp, err := b.cli.Grant(ctx, ttl)
		if err != nil {
			return fmt.Errorf("etcd: set maintenance of %s: grant a lease of %ds: %w", target, ttl, err)
		}
		lease = resp.ID
		opts = append(opts, clientv3.WithLease(lease))
	}
	value, err := maintkit.Encode(m)
	if err != nil {
		return fmt.Errorf("etcd: set maintenance of %s: %w", target, err)
	}
	resp, err := b.cli.Put(ctx, b.maintKey(target), string(value), append(opts, clientv3.WithPrevKV())...)
	if err != nil {
		if lease != 0 {
			b.revokeMaintLease(lease)
		}
		return fmt.Errorf("etcd: set maintenance of %s: %w", target, err)
	}
	if prev := resp.PrevKv; prev != nil && prev.Lease != 0 && clientv3.LeaseID(prev.Lease) != lease {
		b.revokeMaintLease(clientv3.LeaseID(prev.Lease))
	}
	return nil
}

// ClearMaintenance implements discovery.Maintainer: one delete of the
// override's key, and the revocation of its lease, if any.
func (b *Backend) ClearMaintenance(ctx context.Context, target discovery.Key) error {
	if err := discovery.ValidateTarget(target); err != nil {
		return fmt.Errorf("etcd: clear maintenance: %w", err)
	}
	if b.isClosed() {
		return fmt.Errorf("etcd: clear maintenance of %s: %w", target, discovery.ErrClosed)
	}
	key := b.maintKey(target)
	resp, err := b.cli.Delete(ctx, key, clientv3.WithPrevKV())
	if err != nil {
		return fmt.Errorf("etcd: clear maintenance of %s: %w", target, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("etcd: clear maintenance of %s: no key %s: %w", target, key, discovery.ErrNoMaintenance)
	}
	for _, prev := range resp.PrevKvs {
		if prev.Lease != 0 {
			b.revokeMaintLease(clientv3.LeaseID(prev.Lease))
		}
	}
	return nil
}

// ListMaintenance implements discovery.Maintainer with one range read of
// the service's override keys. Invalid values are skipped.
func (b *Backend) ListMaintenance(ctx context.Context, service string) ([]discovery.Maintenance, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("etcd: list maintenance: %w", err)
	}
	if b.isClosed() {
		return nil, fmt.Errorf("etcd: list maintenance of %s: %w", service, discovery.ErrClosed)
	}
	resp, err := b.cli.Get(ctx, b.maintKey(discovery.Key{Service: service}), b.readOpts(clientv3.WithPrefix())...)
	if err != nil {
		return nil, fmt.Errorf("etcd: list maintenance of %s: %w", service, err)
	}
	out := []discovery.Maintenance{}
	prefix := b.servicePrefix(service)
	for _, kv := range resp.Kvs {
		target, ok := maintTarget(service, strings.TrimPrefix(string(kv.Key), prefix))
		if !ok {
			continue
		}
		if m, err := maintkit.Decode(target, kv.Value); err == nil {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(x, y discovery.Maintenance) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// revokeMaintLease revokes the lease of an override that is gone or
// replaced, within RequestTimeout; a lease it cannot revoke holds no key
// and expires with its TTL.
func (b *Backend) revokeMaintLease(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
	defer cancel()
	if _, err := b.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, context.Canceled) {
		b.log.Debug("cannot revoke the lease of a maintenance override", "lease", fmt.Sprintf("%x", int64(lease)), "error", err)
	}
}
