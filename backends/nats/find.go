package nats

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// findRepeat is how soon FindServices reports a service it has reported
// already: keys are written again at every renewal, and one report a
// second is enough for a view to notice a service that came back.
const findRepeat = time.Second

// FindServices implements discovery.OperatorView: it reports the services
// in the Backend's bucket as they appear. It
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
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("nats: find services: %w", unavailable(ctx, errDisconnected))
		case e, ok := <-w.Updates():
			switch {
			case !ok && ctx.Err() != nil:
				// The watch ended with ctx (it was made with it): as the
				// contract says, ctx's error, not a lost connection.
				return ctx.Err()
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
// key is one roster could have written for an instance.
func serviceOfKey(key string) (string, bool) {
	svc, id, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(id, ".") || isReservedKey(key) {
		return "", false
	}
	name := untoken(svc)
	if _, err := token("Service", name); err != nil || id == "" {
		return "", false
	}
	return name, true
}

// FollowRegistry implements discovery.OperatorView: one key-value watch of
// every key of the bucket, whatever the number of services. Each service's
// entries are decoded as Watch decodes them, and a service's whole set is
// reported when it changes (a renewal that changes nothing is not
// reported); each instance is named by its key (see ReadLease). The first
// update, a Reset, goes out once the watch has delivered the bucket's
// last write stored when it listed, as Resolve does. While the connection
// is down it reports the registry unreachable, and reads every key again
// (a Reset) once it is back; the same after the bucket was recreated. It
// returns ctx's error when ctx ends, and discovery.ErrClosed after Close.
//
// Its cost grows with the registry: every write of the bucket, the
// renewals included (three per instance per TTL), reaches it. It is for an
// operator's tool or a server that follows the whole registry, not for
// applications.
func (b *Backend) FollowRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	if err := b.usable(ctx, "follow the registry", ""); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel) // the Backend's Close ends it too
	defer stop()
	end := func() error {
		if b.ctx.Err() != nil {
			return fmt.Errorf("nats: follow the registry: %w", discovery.ErrClosed)
		}
		return ctx.Err()
	}
	down := false
	report := func(err error) {
		if !down {
			down = true
			apply(discovery.RegistryUpdate{Unreachable: fmt.Errorf("nats: follow the registry: %w", unavailable(ctx, err))})
		}
	}
	var bo retry.Backoff
	recreated := false
	for {
		up, changed, cause := b.conn.get()
		if !up {
			if cause == nil {
				cause = errDisconnected
			}
			report(cause)
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return end()
			}
		}
		lost := b.lostSignal()
		kv, _, err := b.bucket(ctx)
		var w jetstream.KeyWatcher
		if err == nil {
			w, err = kv.WatchAll(ctx)
		}
		if err == nil {
			err = b.readAll(ctx, w, apply, changed, lost, &down)
			stopWatcher(w)
		}
		if ctx.Err() != nil {
			return end()
		}
		if err == nil {
			bo, recreated = nil, false // the connection or the bucket changed: start over
			continue
		}
		if b.checkBucket(err) && !recreated {
			recreated = true
			continue
		}
		report(err)
		if bo == nil {
			bo = b.cfg.Retry.Backoff()
		}
		d, _ := bo.Next()
		b.log.Debug("following the registry failed, retrying", "retry_in", d, "error", err)
		if retry.Sleep(ctx, d, changed) != nil {
			return end()
		}
	}
}

// readAll applies w's entries, grouped by service, and reports them (see
// FollowRegistry) until ctx ends, the connection changes state, the
// bucket is found gone or the watch ends (it then returns nil), or until
// it cannot read the bucket's last sequence. *down is set to false by the
// first update it sends.
func (b *Backend) readAll(ctx context.Context, w jetstream.KeyWatcher, apply func(discovery.RegistryUpdate), changed, lost <-chan struct{}, down *bool) error {
	sets := make(map[string]map[string]discovery.Instance) // service -> key -> instance
	reported := make(map[string][]discovery.Instance)      // service -> its set as last reported
	var seen, target uint64
	listed, current := false, false
	setOf := func(service string) []discovery.Instance { return operatorSet(sets[service]) }
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			return nil
		case <-lost:
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			var touched string
			if e == nil {
				last, err := b.lastSequence(ctx, ">")
				if err != nil {
					return unavailable(ctx, err)
				}
				target, listed = last, true
			} else {
				seen = max(seen, e.Revision())
				svc, _, ok := strings.Cut(e.Key(), ".")
				if !ok || discovery.ValidateName("Service", untoken(svc)) != nil {
					continue
				}
				touched = untoken(svc)
				if sets[touched] == nil {
					sets[touched] = make(map[string]discovery.Instance)
				}
				b.apply(sets[touched], e)
			}
			switch {
			case !current && listed && seen >= target:
				current = true
				u := discovery.RegistryUpdate{Reset: true}
				for _, service := range slices.Sorted(maps.Keys(sets)) {
					if set := setOf(service); len(set) > 0 {
						reported[service] = set
						u.Services = append(u.Services, leasedSet(service, set))
					}
				}
				*down = false
				apply(u)
			case current && touched != "":
				set := setOf(touched)
				if slices.EqualFunc(set, reported[touched], discovery.Instance.Equal) {
					continue // a renewal
				}
				if len(set) == 0 {
					delete(reported, touched)
				} else {
					reported[touched] = set
				}
				*down = false
				apply(discovery.RegistryUpdate{Services: []discovery.ServiceSet{leasedSet(touched, set)}})
			}
		}
	}
}

// leasedSet is the ServiceSet of service, each instance named by its key.
func leasedSet(service string, set []discovery.Instance) discovery.ServiceSet {
	out := discovery.ServiceSet{Service: service, Instances: make([]discovery.LeasedInstance, 0, len(set))}
	for _, in := range set {
		out.Instances = append(out.Instances, leased(in))
	}
	return out
}
