package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/maintkit"
)

// This file holds the Backend's discovery.OperatorView (with find.go):
// what an operator's tool (the roster command line, a web view) needs to
// see and fix the bucket, whoever registered the instances. None of it
// touches what the Backend itself keeps registered.
//
// NATS has no leases: a key lives until its last message's TTL runs out,
// and a registrar keeps it alive by writing it again about every TTL/3.
// So an instance's "lease" (discovery.LeasedInstance.Lease) is its own
// bucket key, and the time left on it is its last message's time plus
// the key's TTL: the Nats-TTL header of that message (the TTL of the
// process that wrote it, whatever this Backend's Config.TTL), or, for a
// message without one, the bucket's own TTL (its stream's MaxAge), if any.
// The time left is computed by this machine's clock, so it is off by any
// skew between it and the server's, and it is negative once the TTL has
// passed but NATS has not removed the key yet (it looks at expired
// messages about once a second).

var _ discovery.OperatorView = (*Backend)(nil)

// adminReads is how many keys Instances reads at once.
const adminReads = 16

// Services implements discovery.OperatorView: every service in the
// Backend's bucket with its instance count, sorted by name, in one keys-only listing (values are not read, so
// an instance is counted whether or not its value is valid; removed and
// expired keys are not listed). Keys that are not <service>.<id> with a
// valid service and ID are returned in skipped and not counted. Errors wrap
// discovery.ErrUnavailable when NATS cannot be reached, and
// discovery.ErrClosed after Close.
func (b *Backend) Services(ctx context.Context) (services []discovery.ServiceSummary, skipped []discovery.SkippedEntry, err error) {
	if err := b.usable(ctx, "list services in", b.cfg.Bucket); err != nil {
		return nil, nil, err
	}
	keys, err := b.listKeys(ctx, jetstream.AllKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: list services in %q: %w", b.cfg.Bucket, err)
	}
	counts := make(map[string]int)
	for _, key := range keys {
		if isReservedKey(key) {
			continue
		}
		service, err := serviceOf(key)
		if err != nil {
			skipped = append(skipped, discovery.SkippedEntry{Key: key, Err: err})
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

// serviceOf returns the service of a bucket key <service>.<id>, or why
// the key is not one.
func serviceOf(key string) (string, error) {
	svc, id, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(id, ".") {
		return "", errors.New("not <service>.<id>")
	}
	service := untoken(svc)
	if err := discovery.ValidateName("Service", service); err != nil {
		return "", fmt.Errorf("not <service>.<id>: %w", err)
	}
	if err := discovery.ValidateName("ID", untoken(id)); err != nil {
		return "", fmt.Errorf("not <service>.<id>: %w", err)
	}
	return service, nil
}

// Instances implements discovery.OperatorView: the instances of service
// in the Backend's bucket, sorted by ID, decoded as Resolve decodes them,
// each named by its key with the time left before it expires (see the
// top of this file): one keys-only listing of the service, then one read
// of each key's last message (several at a time), which gives its value,
// time and TTL together. Values that are not valid instances of service stored under
// their own ID are returned in skipped; a key removed between the two
// reads is left out. An invalid service name gives an error wrapping
// discovery.ErrInvalidInstance, and nothing is read. Errors wrap
// discovery.ErrUnavailable when NATS cannot be reached, and
// discovery.ErrClosed after Close.
func (b *Backend) Instances(ctx context.Context, service string) (instances []discovery.InstanceInfo, skipped []discovery.SkippedEntry, err error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, nil, fmt.Errorf("nats: list instances: %w", err)
	}
	filter, err := serviceFilter(service)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: list instances: %w", err)
	}
	if err := b.usable(ctx, "list instances of", service); err != nil {
		return nil, nil, err
	}
	keys, err := b.listKeys(ctx, filter)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: list instances of %q: %w", service, err)
	}
	_, stream, err := b.bucket(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: list instances of %q: %w", service, err)
	}

	// Read the keys' last messages, adminReads at a time.
	msgs := make([]*jetstream.RawStreamMsg, len(keys))
	errs := make([]error, len(keys))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(adminReads, len(keys)) {
		wg.Go(func() {
			for i := range next {
				msgs[i], errs[i] = stream.GetLastMsgForSubject(ctx, b.prefix+keys[i])
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()

	now := time.Now()
	maxAge := stream.CachedInfo().Config.MaxAge
	set := make(map[string]discovery.Instance)
	left := make(map[string]time.Duration) // key -> time left; absent: no TTL
	for i, key := range keys {
		m, err := msgs[i], errs[i]
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // removed meanwhile
		case err != nil:
			return nil, nil, fmt.Errorf("nats: list instances of %q: read %s: %w", service, key, unavailable(ctx, err))
		case m.Header.Get(kvOpHeader) != "" || m.Header.Get(markerHdr) != "":
			continue // removed meanwhile
		}
		if !isReservedKey(key) {
			if _, err := decodeEntry(key, m.Data); err != nil {
				skipped = append(skipped, discovery.SkippedEntry{Key: key, Err: fmt.Errorf("not a valid instance: %w", err)})
				continue
			}
		}
		b.apply(set, msgEntry{bucket: b.cfg.Bucket, key: key, m: m})
		if ttl := messageTTL(m.Header.Get(jetstream.MsgTTLHeader), maxAge); ttl > 0 {
			left[key] = m.Time.Add(ttl).Sub(now)
		}
	}
	for _, in := range operatorSet(set) {
		info := discovery.InstanceInfo{LeasedInstance: leased(in)}
		info.TTL, info.HasTTL = left[info.Lease]
		if !info.HasTTL {
			info.Lease = "" // nothing expires it
		}
		instances = append(instances, info)
	}
	slices.SortFunc(instances, func(x, y discovery.InstanceInfo) int { return cmp.Compare(x.ID, y.ID) })
	return instances, skipped, nil
}

// operatorSet is the set of a service's entries as apply recorded them,
// as Resolve and Watch publish it, for the OperatorView: every listing and
// FollowRegistry read a service's set through it alone, so that what the
// backend merges into its sets (an operator's override kept under a
// reserved key) is merged here too.
func operatorSet(set map[string]discovery.Instance) []discovery.Instance {
	return maintkit.Merge(discovery.NormalizeSet(values(set)))
}

// leased is in with its key as its lease.
func leased(in discovery.Instance) discovery.LeasedInstance {
	key, _ := kvKey(in.Key()) // a decoded instance has valid names
	return discovery.LeasedInstance{Instance: in, Lease: key}
}

// msgEntry is a key's last message as a key-value entry, for apply.
type msgEntry struct {
	bucket, key string
	m           *jetstream.RawStreamMsg
}

func (e msgEntry) Bucket() string                  { return e.bucket }
func (e msgEntry) Key() string                     { return e.key }
func (e msgEntry) Value() []byte                   { return e.m.Data }
func (e msgEntry) Revision() uint64                { return e.m.Sequence }
func (e msgEntry) Created() time.Time              { return e.m.Time }
func (e msgEntry) Delta() uint64                   { return 0 }
func (e msgEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// ReadLease implements discovery.OperatorView: one read of the last
// message of lease, a bucket key <service>.<id> as Instances and
// FollowRegistry name it; the time left is its time plus its TTL, by this
// machine's clock.
func (b *Backend) ReadLease(ctx context.Context, lease string) (discovery.LeaseInfo, error) {
	if isReservedKey(lease) {
		return discovery.LeaseInfo{}, fmt.Errorf("nats: read lease %q: not an instance's key", lease)
	}
	if _, err := serviceOf(lease); err != nil {
		return discovery.LeaseInfo{}, fmt.Errorf("nats: read lease %q: %w", lease, err)
	}
	if err := b.usable(ctx, "read lease", lease); err != nil {
		return discovery.LeaseInfo{}, err
	}
	if err := b.connected(); err != nil {
		return discovery.LeaseInfo{}, fmt.Errorf("nats: read lease %q: %w", lease, err)
	}
	_, stream, err := b.bucket(ctx)
	if err != nil {
		return discovery.LeaseInfo{}, fmt.Errorf("nats: read lease %q: %w", lease, err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, b.prefix+lease)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return discovery.LeaseInfo{}, nil
	case err != nil:
		return discovery.LeaseInfo{}, fmt.Errorf("nats: read lease %q: %w", lease, unavailable(ctx, err))
	case m.Header.Get(kvOpHeader) != "" || m.Header.Get(markerHdr) != "":
		return discovery.LeaseInfo{}, nil // removed
	}
	ttl := messageTTL(m.Header.Get(jetstream.MsgTTLHeader), stream.CachedInfo().Config.MaxAge)
	if ttl == 0 {
		return discovery.LeaseInfo{Found: true}, nil // kept until removed
	}
	left := time.Until(m.Time.Add(ttl))
	if left < 0 {
		return discovery.LeaseInfo{}, nil
	}
	return discovery.LeaseInfo{Found: true, Left: left, Granted: ttl}, nil
}

// Where implements discovery.OperatorView: "in bucket <Bucket>".
func (b *Backend) Where() string { return "in bucket " + b.cfg.Bucket }

// EntryOf implements discovery.OperatorView: "key <service>.<id> in
// bucket <Bucket>", each '.' of a name written '='.
func (b *Backend) EntryOf(k discovery.Key) string {
	key, err := kvKey(k)
	if err != nil {
		key = k.Service + "." + k.ID
	}
	return "key " + key + " in bucket " + b.cfg.Bucket
}

// messageTTL returns how long NATS keeps a message whose Nats-TTL header
// is header, in a stream whose MaxAge is maxAge: the header's TTL as
// nats-server reads it (a duration or whole seconds, truncated to
// seconds; "never" for none), or else maxAge; 0 for a message kept until
// it is removed.
func messageTTL(header string, maxAge time.Duration) time.Duration {
	if header == "" {
		return maxAge
	}
	if strings.EqualFold(header, "never") {
		return 0
	}
	if d, err := time.ParseDuration(header); err == nil {
		return d.Truncate(time.Second)
	}
	if n, err := strconv.ParseInt(header, 10, 64); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return maxAge // "0", or a header nats-server would have refused
}

// listKeys returns the keys that match filter and hold a value, sorted,
// from a keys-only key-value watch that stops once it has the current
// keys.
func (b *Backend) listKeys(ctx context.Context, filter string) ([]string, error) {
	if err := b.connected(); err != nil {
		return nil, err
	}
	_, changed, _ := b.conn.get()
	kv, _, err := b.bucket(ctx)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, unavailable(ctx, err)
	}
	defer stopWatcher(w)
	set := make(map[string]bool)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
			return nil, unavailable(ctx, errDisconnected)
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, unavailable(ctx, errDisconnected)
			}
			if e == nil {
				keys := make([]string, 0, len(set))
				for k := range set {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				return keys, nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				set[e.Key()] = true
			} else {
				delete(set, e.Key())
			}
		}
	}
}

// Delete implements discovery.OperatorView: it removes the key of
// service/id, whoever wrote it: an operator's
// fix for a stale entry, such as one left by a process that is cut off or
// died and whose key has not expired yet. It purges the key, as
// Deregister does, so watchers see the instance go at once; a live
// registrar, this Backend included, writes its instance back. The purge
// is a compare-and-set on the key's last message, retried if the key is
// renewed meanwhile. An invalid service or ID gives an error wrapping
// discovery.ErrInvalidInstance, and nothing is written; no such key gives
// an error wrapping discovery.ErrNotRegistered. Errors wrap
// discovery.ErrUnavailable when NATS cannot be reached, and
// discovery.ErrClosed after Close.
func (b *Backend) Delete(ctx context.Context, service, id string) error {
	if err := discovery.ValidateName("Service", service); err != nil {
		return fmt.Errorf("nats: delete: %w", err)
	}
	if err := discovery.ValidateName("ID", id); err != nil {
		return fmt.Errorf("nats: delete: %w", err)
	}
	k := discovery.Key{Service: service, ID: id}
	key, err := kvKey(k)
	if err != nil {
		return fmt.Errorf("nats: delete: %w", err)
	}
	if err := b.usable(ctx, "delete", k.String()); err != nil {
		return err
	}
	if err := b.connected(); err != nil {
		return fmt.Errorf("nats: delete %s: %w", k, err)
	}
	subject := b.prefix + key
	for attempt := 0; ; attempt++ {
		l, err := b.last(ctx, subject)
		if err != nil {
			return fmt.Errorf("nats: delete %s: %w", k, unavailable(ctx, err))
		}
		if !l.live {
			return fmt.Errorf("nats: delete %s: no key %s in bucket %q: %w", k, key, b.cfg.Bucket, discovery.ErrNotRegistered)
		}
		err = b.purge(ctx, subject, l.seq)
		if err == nil {
			return nil
		}
		if !wrongSequence(err) || attempt >= 10 {
			return fmt.Errorf("nats: delete %s: %w", k, unavailable(ctx, err))
		}
	}
}
