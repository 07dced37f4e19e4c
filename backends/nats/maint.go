package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/maintkit"
)

// Operators' maintenance overrides (discovery.Maintainer), stored beside a
// service's instances in the bucket:
//
//	<svc>./maint       the whole service
//	<svc>./maint/<id>  one instance, registered or not
//
// with every '.' of a name written '=', as in instance keys. The token
// after the service token holds '/', which no roster name can: every key
// whose second token holds '/' is roster's own and not an instance, and
// readers skip the ones they do not know without a warning. The service's
// <svc>.* filter sees overrides at no extra cost. An override with a
// duration is written with that per-key TTL (in whole seconds, rounded up),
// so NATS ends it and watchers see its expiry marker.

var _ discovery.Maintainer = (*Backend)(nil)

// maintToken is the second token of an override key, before its ID.
const maintToken = "/" + maintkit.Name

// maintKey returns the bucket key of target's override.
func maintKey(target discovery.Key) (string, error) {
	svc, err := token("Service", target.Service)
	if err != nil {
		return "", err
	}
	key := svc + "." + maintToken
	if target.ID != "" {
		id, err := token("ID", target.ID)
		if err != nil {
			return "", err
		}
		key += "/" + id
	}
	return key, nil
}

// isReservedKey reports whether a bucket key is one of a service that is
// not an instance: its second token holds '/'.
func isReservedKey(key string) bool {
	_, rest, ok := strings.Cut(key, ".")
	return ok && strings.Contains(rest, "/")
}

// maintTarget returns the target of the override at key, if key is one.
func maintTarget(key string) (discovery.Key, bool) {
	svc, rest, ok := strings.Cut(key, ".")
	if !ok {
		return discovery.Key{}, false
	}
	target := discovery.Key{Service: untoken(svc)}
	if rest != maintToken {
		id, ok := strings.CutPrefix(rest, maintToken+"/")
		if !ok {
			return discovery.Key{}, false
		}
		target.ID = untoken(id)
	}
	if own, err := maintKey(target); err != nil || own != key {
		return discovery.Key{}, false
	}
	return target, true
}

// applyReserved records in set an entry of a reserved key (see
// isReservedKey) and reports true; for any other key it does nothing and
// reports false. An override is recorded as the entry that carries it to
// maintkit.Merge; a reserved key this version does not know, an invalid
// override (with a warning once per revision) or a removal deletes the key
// from set.
func (b *Backend) applyReserved(set map[string]discovery.Instance, e jetstream.KeyValueEntry) bool {
	if !isReservedKey(e.Key()) {
		return false
	}
	delete(set, e.Key())
	target, ok := maintTarget(e.Key())
	if !ok || e.Operation() != jetstream.KeyValuePut {
		return true
	}
	m, err := maintkit.Decode(target, e.Value())
	if err != nil {
		if b.skipped.First(e.Key(), int64(e.Revision())) {
			b.log.Warn("skipping a value that is not a valid maintenance override", "key", e.Key(),
				"revision", e.Revision(), "error", err)
		}
		return true
	}
	set[e.Key()] = maintkit.Entry(m)
	return true
}

// SetMaintenance implements discovery.Maintainer: one write of the
// override's key, with a per-key TTL of d when d is not 0. Errors wrap
// discovery.ErrUnavailable when NATS cannot be reached, and
// discovery.ErrClosed after Close.
func (b *Backend) SetMaintenance(ctx context.Context, target discovery.Key, reason string, d time.Duration) error {
	if err := discovery.ValidateMaintenance(target, reason, d); err != nil {
		return fmt.Errorf("nats: set maintenance: %w", err)
	}
	key, err := maintKey(target)
	if err != nil {
		return fmt.Errorf("nats: set maintenance: %w", err)
	}
	if err := b.usable(ctx, "set maintenance of", target.String()); err != nil {
		return err
	}
	if err := b.connected(); err != nil {
		return fmt.Errorf("nats: set maintenance of %s: %w", target, err)
	}
	if _, _, err := b.bucket(ctx); err != nil {
		return fmt.Errorf("nats: set maintenance of %s: %w", target, err)
	}
	now := time.Now()
	m := discovery.Maintenance{Service: target.Service, ID: target.ID, Reason: reason, Since: now}
	var opts []jetstream.PublishOpt
	if d > 0 {
		m.Until = now.Add(d)
		opts = append(opts, jetstream.WithMsgTTL((d+time.Second-1)/time.Second*time.Second))
	}
	value, err := maintkit.Encode(m)
	if err != nil {
		return fmt.Errorf("nats: set maintenance of %s: %w", target, err)
	}
	msg := &natsgo.Msg{Subject: b.prefix + key, Data: value}
	if _, err := b.js.PublishMsg(ctx, msg, opts...); err != nil {
		return fmt.Errorf("nats: set maintenance of %s: %w", target, unavailable(ctx, err))
	}
	return nil
}

// ClearMaintenance implements discovery.Maintainer: a read of the
// override's key and a purge of it, which watchers see as a removal.
func (b *Backend) ClearMaintenance(ctx context.Context, target discovery.Key) error {
	if err := discovery.ValidateTarget(target); err != nil {
		return fmt.Errorf("nats: clear maintenance: %w", err)
	}
	key, err := maintKey(target)
	if err != nil {
		return fmt.Errorf("nats: clear maintenance: %w", err)
	}
	if err := b.usable(ctx, "clear maintenance of", target.String()); err != nil {
		return err
	}
	if err := b.connected(); err != nil {
		return fmt.Errorf("nats: clear maintenance of %s: %w", target, err)
	}
	for attempt := 0; ; attempt++ {
		l, err := b.last(ctx, b.prefix+key)
		if err != nil {
			return fmt.Errorf("nats: clear maintenance of %s: %w", target, unavailable(ctx, err))
		}
		if !l.live {
			return fmt.Errorf("nats: clear maintenance of %s: no key %s: %w", target, key, discovery.ErrNoMaintenance)
		}
		err = b.purge(ctx, b.prefix+key, l.seq)
		if err == nil || !wrongSequence(err) || attempt == 2 {
			if err != nil {
				return fmt.Errorf("nats: clear maintenance of %s: %w", target, unavailable(ctx, err))
			}
			return nil
		}
		// Set again meanwhile: clear what is there now.
	}
}

// ListMaintenance implements discovery.Maintainer with one key-value watch
// of the service's keys, read up to their current values.
func (b *Backend) ListMaintenance(ctx context.Context, service string) ([]discovery.Maintenance, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("nats: list maintenance: %w", err)
	}
	filter, err := serviceFilter(service)
	if err != nil {
		return nil, fmt.Errorf("nats: list maintenance: %w", err)
	}
	if err := b.usable(ctx, "list maintenance of", service); err != nil {
		return nil, err
	}
	if err := b.connected(); err != nil {
		return nil, fmt.Errorf("nats: list maintenance of %q: %w", service, err)
	}
	kv, _, err := b.bucket(ctx)
	if err != nil {
		return nil, fmt.Errorf("nats: list maintenance of %q: %w", service, err)
	}
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("nats: list maintenance of %q: %w", service, unavailable(ctx, err))
	}
	defer stopWatcher(w)
	out := []discovery.Maintenance{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nats: list maintenance of %q: %w", service, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("nats: list maintenance of %q: %w", service, unavailable(ctx, errors.New("watch ended")))
			}
			if e == nil {
				slices.SortFunc(out, func(x, y discovery.Maintenance) int { return strings.Compare(x.ID, y.ID) })
				return out, nil
			}
			if target, ok := maintTarget(e.Key()); ok {
				if m, err := maintkit.Decode(target, e.Value()); err == nil {
					out = append(out, m)
				}
			}
		}
	}
}
