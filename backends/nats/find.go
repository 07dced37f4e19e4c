package nats

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
)

// findRepeat is how soon FindServices reports a service it has reported
// already: keys are written again at every renewal, and one report a
// second is enough for a view to notice a service that came back.
const findRepeat = time.Second

// FindServices reports the services in the Backend's bucket as they
// appear, for an operator's view of the whole registry (roster ui). It
// watches every key of the bucket without its value (one key-value watch
// of all keys, metadata only) and calls found with every service that has
// a key, sorted, and possibly none, once the watch has delivered the keys
// present; then with the service of each key written, at most once a
// second per service. found may be given a service more than once, and is
// called from FindServices's goroutine.
//
// It returns ctx's error when ctx ends, and an error wrapping
// discovery.ErrUnavailable when NATS cannot be reached or the connection
// drops (calling it again reads the keys again), or discovery.ErrClosed
// after Close.
//
// Its cost grows with the registry: every write of the bucket, the
// renewals included (three per instance per TTL), reaches it. It is for one
// operator's tool, not for applications, which watch the services they use
// (Watch).
func (b *Backend) FindServices(ctx context.Context, found func(services []string)) error {
	if err := b.usable(ctx, "find services", ""); err != nil {
		return err
	}
	if err := b.connected(); err != nil {
		return fmt.Errorf("nats: find services: %w", err)
	}
	_, changed, _ := b.conn.get()
	kv, _, err := b.bucket(ctx)
	if err != nil {
		return fmt.Errorf("nats: find services: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("nats: find services: %w", unavailable(ctx, err))
	}
	defer stopWatcher(w)
	reported := make(map[string]time.Time)
	var initial []string // until the keys present are delivered
	listed := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.ctx.Done():
			return fmt.Errorf("nats: find services: %w", discovery.ErrClosed)
		case <-changed:
			return fmt.Errorf("nats: find services: %w", unavailable(ctx, errDisconnected))
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return fmt.Errorf("nats: find services: %w", unavailable(ctx, errDisconnected))
			case e == nil:
				listed = true
				slices.Sort(initial)
				found(initial)
				initial = nil
				continue
			}
			svc, ok := serviceOfKey(e.Key())
			if !ok {
				continue
			}
			now := time.Now()
			if last, seen := reported[svc]; seen && now.Sub(last) < findRepeat {
				continue
			}
			reported[svc] = now
			if !listed {
				initial = append(initial, svc)
			} else {
				found([]string{svc})
			}
		}
	}
}

// serviceOfKey returns the service of a bucket key <service>.<id>, if the
// key is one roster could have written.
func serviceOfKey(key string) (string, bool) {
	svc, id, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(id, ".") {
		return "", false
	}
	name := untoken(svc)
	if _, err := token("Service", name); err != nil || id == "" {
		return "", false
	}
	return name, true
}
