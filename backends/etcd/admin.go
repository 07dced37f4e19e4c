package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
)

// This file holds what an operator's tool (the roster command line, a web
// view) needs to see and fix the registry under the Backend's prefix,
// whoever registered the instances: read-only listings and a delete by
// service and ID. None of it touches what the Backend itself keeps
// registered.

// ServiceSummary is one service under the Backend's prefix, as Services
// lists it.
type ServiceSummary struct {
	// Service is the service name.
	Service string
	// Instances is the number of keys <Prefix>/<Service>/<id> with a valid
	// ID; their values are not read.
	Instances int
}

// InstanceInfo is one instance under the Backend's prefix with its lease,
// as Instances lists it.
type InstanceInfo struct {
	discovery.Instance
	// Lease is the lease the instance's key is attached to; 0 for a key
	// without a lease, which stays until someone deletes it.
	Lease clientv3.LeaseID
	// TTL is the time left on Lease, in whole seconds, as etcd reported it
	// when Instances asked; negative once the lease has expired (or was
	// revoked) after the key was read. 0 without a lease.
	TTL time.Duration
}

// SkippedKey is a key under the Backend's prefix that Services or
// Instances passed over because it does not hold what roster writes there:
// a key that is not <Prefix>/<service>/<id>, or a value that is not a valid
// instance of that service stored under its own ID. Someone other than
// roster wrote it.
type SkippedKey struct {
	// Key is the etcd key, as it is: it may hold any bytes.
	Key string
	// Err says why it was skipped. Its text may quote what was read.
	Err error
}

// Services lists every service under the Backend's prefix with its
// instance count, sorted by name, in one keys-only range read (values are
// not read, so an instance is counted whether or not its value is valid).
// Keys that are not <Prefix>/<service>/<id> with a valid service and ID are
// returned in skipped and not counted.
func (b *Backend) Services(ctx context.Context) (services []ServiceSummary, skipped []SkippedKey, err error) {
	if b.isClosed() {
		return nil, nil, fmt.Errorf("etcd: list services: %w", discovery.ErrClosed)
	}
	prefix := b.cfg.Prefix + "/"
	resp, err := b.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: list services under %s: %w", b.cfg.Prefix, err)
	}
	counts := make(map[string]int)
	for _, kv := range resp.Kvs {
		if string(kv.Key) == b.historyPath() || b.isReservedKey(string(kv.Key)) {
			continue // roster's own (history.go, maint.go), not an instance
		}
		service, id, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
		if !ok || discovery.ValidateName("Service", service) != nil || discovery.ValidateName("ID", id) != nil {
			skipped = append(skipped, SkippedKey{Key: string(kv.Key),
				Err: fmt.Errorf("not %s<service>/<id>", prefix)})
			continue
		}
		counts[service]++
	}
	services = make([]ServiceSummary, 0, len(counts))
	for s, n := range counts {
		services = append(services, ServiceSummary{Service: s, Instances: n})
	}
	slices.SortFunc(services, func(x, y ServiceSummary) int { return cmp.Compare(x.Service, y.Service) })
	return services, skipped, nil
}

// Instances lists the instances of service under the Backend's prefix,
// sorted by ID, with their leases and the time left on each: one range
// read, then one lease TimeToLive request per distinct lease. Values that
// are not valid instances of service stored under their own ID are
// returned in skipped. An invalid service name gives an error wrapping
// discovery.ErrInvalidInstance, and nothing is read.
func (b *Backend) Instances(ctx context.Context, service string) (instances []InstanceInfo, skipped []SkippedKey, err error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, nil, fmt.Errorf("etcd: list instances: %w", err)
	}
	if b.isClosed() {
		return nil, nil, fmt.Errorf("etcd: list instances of %s: %w", service, discovery.ErrClosed)
	}
	prefix := b.servicePrefix(service)
	resp, err := b.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: list instances of %s: %w", service, err)
	}
	instances = make([]InstanceInfo, 0, len(resp.Kvs))
	ttls := make(map[clientv3.LeaseID]time.Duration)
	for _, kv := range resp.Kvs {
		if b.isReservedKey(string(kv.Key)) {
			continue // roster's own (maint.go), not an instance
		}
		in, err := decodeInstance(service, strings.TrimPrefix(string(kv.Key), prefix), kv.Value)
		if err != nil {
			skipped = append(skipped, SkippedKey{Key: string(kv.Key), Err: fmt.Errorf("not a valid instance: %w", err)})
			continue
		}
		info := InstanceInfo{Instance: in, Lease: clientv3.LeaseID(kv.Lease)}
		if info.Lease != 0 {
			ttls[info.Lease] = 0
		}
		instances = append(instances, info)
	}
	b.applyMaintInfo(service, resp.Kvs, instances) // maint.go
	for lease := range ttls {
		resp, err := b.cli.TimeToLive(ctx, lease)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd: time to live of lease %x: %w", int64(lease), err)
		}
		ttls[lease] = time.Duration(resp.TTL) * time.Second // -1 once expired
	}
	for i := range instances {
		if instances[i].Lease != 0 {
			instances[i].TTL = ttls[instances[i].Lease]
		}
	}
	slices.SortFunc(instances, func(x, y InstanceInfo) int { return cmp.Compare(x.ID, y.ID) })
	return instances, skipped, nil
}

// Delete deletes the key <Prefix>/<service>/<id>, whoever wrote it: an
// operator's fix for a stale entry, such as one left by a process that died
// and whose lease has not expired yet. A live registrar puts its instance
// back at once. An invalid service or ID gives an error wrapping
// discovery.ErrInvalidInstance, and nothing is written; no such key gives
// an error wrapping discovery.ErrNotRegistered.
func (b *Backend) Delete(ctx context.Context, service, id string) error {
	if err := discovery.ValidateName("Service", service); err != nil {
		return fmt.Errorf("etcd: delete: %w", err)
	}
	if err := discovery.ValidateName("ID", id); err != nil {
		return fmt.Errorf("etcd: delete: %w", err)
	}
	k := discovery.Key{Service: service, ID: id}
	if b.isClosed() {
		return fmt.Errorf("etcd: delete %s: %w", k, discovery.ErrClosed)
	}
	key := b.key(service, id)
	resp, err := b.cli.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("etcd: delete %s: %w", k, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("etcd: delete %s: no key %s: %w", k, key, discovery.ErrNotRegistered)
	}
	return nil
}

// decodeInstance decodes the value of the key <Prefix>/<service>/<id> into
// the instance it holds. It fails unless the value is a valid instance of
// service with exactly that ID, which must not be empty: Instance.Validate
// accepts an empty ID, which Register derives from the address, but a
// stored instance always has its ID.
func decodeInstance(service, id string, value []byte) (discovery.Instance, error) {
	var in discovery.Instance
	if err := json.Unmarshal(value, &in); err != nil {
		return discovery.Instance{}, err
	}
	if err := in.Validate(); err != nil {
		return discovery.Instance{}, err
	}
	// Validate lets an empty ID through; the stored one must be a name,
	// which also keeps '/' out of the key's last segment.
	if err := discovery.ValidateName("ID", in.ID); err != nil {
		return discovery.Instance{}, err
	}
	if in.Service != service || in.ID != id {
		return discovery.Instance{}, fmt.Errorf("it holds instance %s/%s", in.Service, in.ID)
	}
	return in, nil
}
