package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/maintkit"
)

// This file holds the Backend's discovery.OperatorView (with
// findservices.go): what an operator's tool (the roster command line, a
// web view) needs to see and fix the registry under the Backend's prefix,
// whoever registered the instances. None of it touches what the Backend
// itself keeps registered.

var _ discovery.OperatorView = (*Backend)(nil)

// reservedKey reports whether the remainder of a key after
// <Prefix>/<service>/ is one of roster's reserved, non-instance keys
// (such as an operator's maintenance override): it starts with '~',
// which an instance ID cannot hold.
func reservedKey(rest string) bool { return strings.HasPrefix(rest, "~") }

// Services implements discovery.OperatorView: every service under the
// Backend's prefix with its instance count, sorted by name, in one
// keys-only range read (values are not read, so an instance is counted
// whether or not its value is valid). Keys that are not
// <Prefix>/<service>/<id> with a valid service and ID are returned in
// skipped and not counted; roster's own keys (the history key, reserved
// keys under a service) are passed over silently.
func (b *Backend) Services(ctx context.Context) (services []discovery.ServiceSummary, skipped []discovery.SkippedEntry, err error) {
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
		if ok && discovery.ValidateName("Service", service) == nil && reservedKey(id) {
			continue
		}
		if !ok || discovery.ValidateName("Service", service) != nil || discovery.ValidateName("ID", id) != nil {
			skipped = append(skipped, discovery.SkippedEntry{Key: string(kv.Key),
				Err: fmt.Errorf("not %s<service>/<id>", prefix)})
			continue
		}
		counts[service]++
	}
	services = make([]discovery.ServiceSummary, 0, len(counts))
	for s, n := range counts {
		services = append(services, discovery.ServiceSummary{Service: s, Instances: n})
	}
	slices.SortFunc(services, func(x, y discovery.ServiceSummary) int { return cmp.Compare(x.Service, y.Service) })
	return services, skipped, nil
}

// Instances implements discovery.OperatorView: the instances of service
// under the Backend's prefix, sorted by ID, decoded as Resolve decodes
// them, each with its lease (in hex) and the time left on it: one range
// read, then one lease TimeToLive request per distinct lease. Values that
// are not valid instances of service stored under their own ID are
// returned in skipped. An invalid service name gives an error wrapping
// discovery.ErrInvalidInstance, and nothing is read.
func (b *Backend) Instances(ctx context.Context, service string) (instances []discovery.InstanceInfo, skipped []discovery.SkippedEntry, err error) {
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
	leases := make(map[string]clientv3.LeaseID) // ID -> its key's lease
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), prefix)
		if reservedKey(id) {
			continue
		}
		if _, err := decodeInstance(service, id, kv.Value); err != nil {
			skipped = append(skipped, discovery.SkippedEntry{Key: string(kv.Key), Err: fmt.Errorf("not a valid instance: %w", err)})
			continue
		}
		leases[id] = clientv3.LeaseID(kv.Lease)
	}
	ttls := make(map[clientv3.LeaseID]time.Duration)
	for _, in := range b.operatorSet(service, resp.Kvs) {
		info := discovery.InstanceInfo{LeasedInstance: discovery.LeasedInstance{Instance: in}}
		if lease := leases[in.ID]; lease != 0 {
			info.Lease, info.HasTTL = leaseName(lease), true
			ttls[lease] = 0
		}
		instances = append(instances, info)
	}
	for lease := range ttls {
		resp, err := b.cli.TimeToLive(ctx, lease)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd: time to live of lease %x: %w", int64(lease), err)
		}
		ttls[lease] = time.Duration(resp.TTL) * time.Second // -1 once expired
	}
	for i := range instances {
		if lease := leases[instances[i].ID]; lease != 0 {
			instances[i].TTL = ttls[lease]
		}
	}
	slices.SortFunc(instances, func(x, y discovery.InstanceInfo) int { return cmp.Compare(x.ID, y.ID) })
	return instances, skipped, nil
}

// operatorSet decodes the keys of service as Resolve and Watch do, for
// the OperatorView: every listing and FollowRegistry read a service's set
// through it alone, so that what the backend merges into its sets (an
// operator's override kept under a reserved key) is merged here too.
func (b *Backend) operatorSet(service string, kvs []*mvccpb.KeyValue) []discovery.Instance {
	return maintkit.Merge(b.decodeAll(service, kvs))
}

// leaseName is a lease's name in discovery.LeasedInstance: its ID in hex.
func leaseName(id clientv3.LeaseID) string { return strconv.FormatInt(int64(id), 16) }

// ReadLease implements discovery.OperatorView: one TimeToLive request for
// the lease named (in hex) by Instances or FollowRegistry.
func (b *Backend) ReadLease(ctx context.Context, lease string) (discovery.LeaseInfo, error) {
	id, err := strconv.ParseInt(lease, 16, 64)
	if err != nil {
		return discovery.LeaseInfo{}, fmt.Errorf("etcd: read lease %q: not a lease ID in hex", lease)
	}
	if b.isClosed() {
		return discovery.LeaseInfo{}, fmt.Errorf("etcd: read lease %s: %w", lease, discovery.ErrClosed)
	}
	resp, err := b.cli.TimeToLive(ctx, clientv3.LeaseID(id))
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return discovery.LeaseInfo{}, nil
	case err != nil:
		return discovery.LeaseInfo{}, fmt.Errorf("etcd: time to live of lease %s: %w", lease, err)
	case resp.TTL < 0:
		return discovery.LeaseInfo{}, nil
	}
	return discovery.LeaseInfo{Found: true, Left: time.Duration(resp.TTL) * time.Second,
		Granted: time.Duration(resp.GrantedTTL) * time.Second}, nil
}

// Where implements discovery.OperatorView: "under <Prefix>".
func (b *Backend) Where() string { return "under " + b.cfg.Prefix }

// EntryOf implements discovery.OperatorView: "key <Prefix>/<service>/<id>".
func (b *Backend) EntryOf(k discovery.Key) string { return "key " + b.key(k.Service, k.ID) }

// Delete implements discovery.OperatorView: it deletes the key
// <Prefix>/<service>/<id>, whoever wrote it: an
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
