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
)

// This file holds what an operator's tool (the roster command line, a web
// view) needs to see and fix the bucket, whoever registered the
// instances: read-only listings and a delete by service and ID. None of
// it touches what the Backend itself keeps registered. The result types
// have the shape of the etcd backend's, with the expiry of a key in place
// of etcd's lease.

// ServiceSummary is one service in the Backend's bucket, as Services lists
// it.
type ServiceSummary struct {
	// Service is the service name.
	Service string
	// Instances is the number of keys <service>.<id> with a valid ID;
	// their values are not read.
	Instances int
}

// InstanceInfo is one instance in the Backend's bucket with the expiry of
// its key, as Instances lists it.
//
// NATS has no leases: a key lives until its last message's TTL runs out,
// and a registrar keeps it alive by writing it again about every TTL/3.
// The key's TTL is the Nats-TTL header of its last message (the TTL of
// the process that wrote it, whatever this Backend's Config.TTL), or,
// for a message without one, the bucket's own TTL (its stream's MaxAge),
// if any.
type InstanceInfo struct {
	discovery.Instance
	// Written is when NATS stored the key's last message (the key-value
	// entry's Created time, by the server's clock): for a roster
	// registrar, its last renewal.
	Written time.Time
	// Expires is when NATS removes the key unless it is written again:
	// Written plus the key's TTL. Zero for a key without a TTL, which
	// stays until someone deletes it.
	Expires time.Time
	// TTL is the time left before Expires when Instances read the key, by
	// this machine's clock (so off by any skew between it and the
	// server's): between 0 and the writer's TTL while it renews the key.
	// Negative once Expires has passed but NATS has not removed the key
	// yet (it looks at expired messages about once a second). 0 for a key
	// without a TTL.
	TTL time.Duration
}

// SkippedKey is a key of the Backend's bucket that Services or Instances
// passed over because it does not hold what roster writes there: a key
// that is not <service>.<id> with valid names ('.' in a name written
// '='), or a value that is not a valid instance of that service stored
// under its own ID. Someone other than roster wrote it.
type SkippedKey struct {
	// Key is the bucket key, as it is.
	Key string
	// Err says why it was skipped. Its text may quote what was read.
	Err error
}

// adminReads is how many keys Instances reads at once.
const adminReads = 16

// Services lists every service in the Backend's bucket with its instance
// count, sorted by name, in one keys-only listing (values are not read, so
// an instance is counted whether or not its value is valid; removed and
// expired keys are not listed). Keys that are not <service>.<id> with a
// valid service and ID are returned in skipped and not counted. Errors wrap
// discovery.ErrUnavailable when NATS cannot be reached, and
// discovery.ErrClosed after Close.
func (b *Backend) Services(ctx context.Context) (services []ServiceSummary, skipped []SkippedKey, err error) {
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
			continue // roster's own (maint.go), not an instance
		}
		service, err := serviceOf(key)
		if err != nil {
			skipped = append(skipped, SkippedKey{Key: key, Err: err})
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

// Instances lists the instances of service in the Backend's bucket,
// sorted by ID, with the expiry of each key (see InstanceInfo): one
// keys-only listing of the service, then one read of each key's last
// message (several at a time), which gives its value, time and TTL
// together. Values that are not valid instances of service stored under
// their own ID are returned in skipped; a key removed between the two
// reads is left out. An invalid service name gives an error wrapping
// discovery.ErrInvalidInstance, and nothing is read. Errors wrap
// discovery.ErrUnavailable when NATS cannot be reached, and
// discovery.ErrClosed after Close.
func (b *Backend) Instances(ctx context.Context, service string) (instances []InstanceInfo, skipped []SkippedKey, err error) {
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
	instances = make([]InstanceInfo, 0, len(keys))
	var overrides []discovery.Instance
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
		if isReservedKey(key) { // roster's own (maint.go), not an instance
			overrides = appendOverride(overrides, key, m.Data)
			continue
		}
		in, err := decodeEntry(key, m.Data)
		if err != nil {
			skipped = append(skipped, SkippedKey{Key: key, Err: fmt.Errorf("not a valid instance: %w", err)})
			continue
		}
		info := InstanceInfo{Instance: in, Written: m.Time}
		if ttl := messageTTL(m.Header.Get(jetstream.MsgTTLHeader), maxAge); ttl > 0 {
			info.Expires = m.Time.Add(ttl)
			info.TTL = info.Expires.Sub(now)
		}
		instances = append(instances, info)
	}
	applyMaintInfo(instances, overrides) // maint.go
	slices.SortFunc(instances, func(x, y InstanceInfo) int { return cmp.Compare(x.ID, y.ID) })
	return instances, skipped, nil
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

// Delete removes the key of service/id, whoever wrote it: an operator's
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
