package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/clientopts"
	"github.com/roster-sd/roster/retry"
)

// Scheme is the URI scheme of roster targets: "roster:///<service>".
const Scheme = "roster"

var _ resolver.Builder = (*Builder)(nil)

// Builder is a gRPC resolver.Builder for the "roster" scheme that resolves
// services with a discovery.Resolver. Make one with NewBuilder and pass it
// to a ClientConn with grpc.WithResolvers; it is not registered globally.
// One Builder serves any number of ClientConns; each gets a resolver of its
// own that watches its service until the ClientConn is closed.
//
// A Builder is safe for concurrent use. It holds no goroutine of its own.
type Builder struct {
	upstream discovery.Resolver
	opts     options
}

// NewBuilder returns a Builder that resolves services with r.
//
// If r is nil or an option has an invalid value, NewBuilder returns an
// error wrapping ErrInvalidOption that names the argument or option and
// the reason.
func NewBuilder(r discovery.Resolver, opts ...Option) (*Builder, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: discovery resolver is nil", ErrInvalidOption)
	}
	o, err := clientopts.Build(defaultOptions(), opts, options.validate)
	if err != nil {
		return nil, err
	}
	return &Builder{upstream: r, opts: o}, nil
}

// Scheme implements resolver.Builder: it returns Scheme.
func (b *Builder) Scheme() string { return Scheme }

// Build implements resolver.Builder. The target must be
// "roster:///<service>" (no authority) with a valid service name; otherwise
// Build returns an error wrapping discovery.ErrInvalidInstance or naming
// the problem. It starts the goroutine that watches the service; the
// resolver's Close stops it.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service, err := serviceOf(target)
	if err != nil {
		return nil, fmt.Errorf("grpcresolver: target %q: %w", target.String(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &watchResolver{
		upstream: b.upstream,
		service:  service,
		cc:       cc,
		opts:     b.opts,
		log:      b.opts.Log.With("service", service),
		ctx:      ctx,
		cancel:   cancel,
	}
	r.wg.Go(r.run)
	return r, nil
}

// serviceOf returns the service named by a "roster:///<service>" target.
func serviceOf(target resolver.Target) (string, error) {
	if target.URL.Host != "" {
		return "", fmt.Errorf("authority %q is not supported; want %s:///<service>", target.URL.Host, Scheme)
	}
	service := target.Endpoint()
	if err := discovery.ValidateName("Service", service); err != nil {
		return "", err
	}
	return service, nil
}

// watchResolver is the resolver of one ClientConn: one goroutine (run)
// watches the service and sends every set to gRPC.
type watchResolver struct {
	upstream discovery.Resolver
	service  string
	cc       resolver.ClientConn
	opts     options
	log      hclog.Logger

	ctx       context.Context // ends on Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu         sync.Mutex
	nowPending bool               // ResolveNow was called and not served yet
	interrupt  context.CancelFunc // cuts the current Next short; nil outside Next
	lastForced time.Time          // when the last forced Resolve started
	watching   bool               // the watch delivered a set and has not failed since

	// Owned by run.
	pushed    []discovery.Instance // last set sent to gRPC
	hasPushed bool                 // pushed is what gRPC holds
	fallback  bool                 // the last push fell back on not-ready instances
	// Registry revisions (see discovery.RevisionResolver; 0: unknown),
	// forgotten at each outage, after which the registry may have started
	// a new history.
	pushedRev   uint64 // revision of pushed
	resolvedRev uint64 // revision of a Resolve's set sent to gRPC, until the watch reaches it
}

// ResolveNow implements resolver.Resolver. gRPC calls it when connections
// fail, asking for newer addresses. While the watch is healthy, gRPC
// already holds the watch's current set and gets every change as soon as
// the watch sees it, so ResolveNow does nothing: a separately read set
// could be newer than the watch's next one (which would then roll gRPC's
// addresses back) or older (and stay until the next change). Only while
// the watch is failing or being set up does the resolver Resolve the
// service upstream and send gRPC the result, at once or, if it did so less
// than the ResolveNow interval ago, at the end of that interval. It does
// not block. While the watch is being set up again after a failure, the
// watch's first set serves the request.
func (r *watchResolver) ResolveNow(resolver.ResolveNowOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watching {
		return
	}
	r.nowPending = true
	if r.interrupt != nil {
		r.interrupt()
	}
}

// Close implements resolver.Resolver: it stops the watch and waits for
// the resolver's goroutine to end. It is idempotent.
func (r *watchResolver) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
}

// run watches the service until Close. It never gives up: after a failure
// it reports the error to gRPC, waits for the next delay of the retry
// policy and watches again.
func (r *watchResolver) run() {
	r.opts.Retry.Forever(r.ctx, func(context.Context) (bool, error) {
		return r.follow()
	}, func(f retry.Failure) {
		r.log.Warn("watch failed, retrying", "attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
		r.cc.ReportError(fmt.Errorf("grpcresolver: %s: %w", r.service, f.Err))
		// gRPC now holds an error: send the next set even if unchanged.
		// The registry may start a new history meanwhile: compare no
		// revision across the failure.
		r.hasPushed = false
		r.pushedRev, r.resolvedRev = 0, 0
	})
}

// follow watches the service and sends every set to gRPC, serving
// ResolveNow requests in between, until the watch fails or Close. An error
// wrapping discovery.ErrUnavailable does not end the watch (see
// unavailable). It reports whether the watch delivered at least one set.
func (r *watchResolver) follow() (healthy bool, err error) {
	w, err := r.upstream.Watch(r.ctx, r.service)
	if err != nil {
		return false, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	defer r.setWatching(false)
	// The watch's first set is fresh: it serves a pending ResolveNow.
	r.mu.Lock()
	r.nowPending = false
	r.mu.Unlock()
	for {
		if r.takeResolveNow() {
			r.resolveNow()
		}
		set, rev, interrupted, err := r.next(w)
		switch {
		case r.ctx.Err() != nil:
			return healthy, r.ctx.Err()
		case interrupted:
			continue
		case errors.Is(err, discovery.ErrUnavailable):
			// Transient: the watcher goes on and brings the set again
			// once the registry is back.
			r.unavailable(err)
			continue
		case err != nil:
			return healthy, fmt.Errorf("watch: next: %w", err)
		}
		if !healthy {
			healthy = true
			r.log.Debug("watching")
		}
		if rev != 0 && rev < r.resolvedRev {
			// Older than the set a Resolve already gave gRPC: the watch
			// has not caught up with it yet, and brings it next.
			r.log.Debug("skipping a watch set older than the resolved one",
				"revision", rev, "resolved_revision", r.resolvedRev)
		} else {
			r.resolvedRev = 0
			r.push(set, rev)
		}
		r.setWatching(true)
	}
}

// setWatching records whether the watch is healthy, which decides whether
// ResolveNow reads the service upstream.
func (r *watchResolver) setWatching(ok bool) {
	r.mu.Lock()
	r.watching = ok
	r.mu.Unlock()
}

// unavailable handles a Next that reports the registry unreachable. The
// addresses gRPC holds stay as they are: the instances behind them are
// likely still serving, and only the registry is out of reach. If gRPC
// holds a non-empty address list, the resolver only logs the outage: a
// ReportError would add nothing, since gRPC keeps the last good addresses
// and the built-in policies keep their connections (pick_first ignores a
// resolver error after a good update, round_robin's children and the base
// balancer only let it show in the picker's error once every connection
// has failed), while a custom policy might drop its connections. If gRPC
// holds no address, there is no connection to disturb, and ReportError
// lets calls fail with the reason. Either way the next set is sent again,
// even if unchanged, since it confirms the addresses.
func (r *watchResolver) unavailable(err error) {
	r.setWatching(false)
	r.pushedRev, r.resolvedRev = 0, 0
	if r.hasPushed && len(r.pushed) > 0 {
		r.log.Warn("registry unavailable, keeping the last addresses",
			"addresses", len(r.pushed), "error", err)
	} else {
		r.log.Warn("registry unavailable", "error", err)
		r.cc.ReportError(fmt.Errorf("grpcresolver: %s: watch: next: %w", r.service, err))
	}
	r.hasPushed = false
}

// next calls w.Next until the set changes, ResolveNow interrupts it, or a
// pending ResolveNow comes due. rev is the set's revision if w tells it
// (discovery.RevisionWatcher), else 0.
func (r *watchResolver) next(w discovery.Watcher) (set []discovery.Instance, rev uint64, interrupted bool, err error) {
	r.mu.Lock()
	var ctx context.Context
	var cancel context.CancelFunc
	if r.nowPending {
		ctx, cancel = context.WithDeadline(r.ctx, r.lastForced.Add(r.opts.resolveNowInterval))
	} else {
		ctx, cancel = context.WithCancel(r.ctx)
	}
	r.interrupt = cancel
	r.mu.Unlock()

	if rw, ok := w.(discovery.RevisionWatcher); ok {
		set, rev, err = rw.NextRevision(ctx)
	} else {
		set, err = w.Next(ctx)
	}

	r.mu.Lock()
	r.interrupt = nil
	r.mu.Unlock()
	interrupted = err != nil && ctx.Err() != nil && r.ctx.Err() == nil
	cancel()
	return set, rev, interrupted, err
}

// takeResolveNow reports whether a ResolveNow request is due, and takes it.
func (r *watchResolver) takeResolveNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.nowPending || now.Before(r.lastForced.Add(r.opts.resolveNowInterval)) {
		return false
	}
	r.nowPending, r.lastForced = false, now
	return true
}

// resolveNow Resolves the service upstream and sends the result to gRPC,
// unless the upstream tells revisions and gRPC holds a newer set.
func (r *watchResolver) resolveNow() {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.timeout)
	var (
		set []discovery.Instance
		rev uint64
		err error
	)
	if rr, ok := r.upstream.(discovery.RevisionResolver); ok {
		set, rev, err = rr.ResolveRevision(ctx, r.service)
	} else {
		set, err = r.upstream.Resolve(ctx, r.service)
	}
	cancel()
	if err != nil {
		if r.ctx.Err() != nil {
			return
		}
		// gRPC keeps the addresses of its last good update.
		r.log.Warn("resolve failed", "error", err)
		r.cc.ReportError(fmt.Errorf("grpcresolver: %s: resolve: %w", r.service, err))
		r.hasPushed = false
		return
	}
	if rev != 0 && rev < r.pushedRev {
		r.log.Debug("skipping a resolved set older than gRPC's", "revision", rev, "revision_held", r.pushedRev)
		return
	}
	r.push(set, rev)
	r.resolvedRev = rev
}

// push sends set, read at revision rev (0 if unknown), to gRPC as the
// full address list, unless gRPC holds it already.
func (r *watchResolver) push(set []discovery.Instance, rev uint64) {
	set = discovery.NormalizeSet(set)
	r.pushedRev = rev
	if r.hasPushed && discovery.EqualSets(r.pushed, set) {
		return
	}
	r.pushed, r.hasPushed = set, true
	routed, fallback := r.opts.route.Select(set)
	if fallback != r.fallback {
		r.fallback = fallback
		if fallback {
			r.log.Warn("no instance is serving; routing to the not-ready ones rather than to none", "not_ready", len(routed), "instances", len(set))
		} else {
			r.log.Info("routing to serving instances again", "serving", len(routed), "instances", len(set))
		}
	}
	st := stateOf(routed)
	if err := r.cc.UpdateState(st); err != nil {
		// The watch brings every change: nothing to resolve again. An
		// empty set, for one, is refused by most balancers.
		r.log.Debug("gRPC did not accept the update", "addresses", len(st.Addresses), "error", err)
		return
	}
	r.log.Debug("updated addresses", "addresses", len(st.Addresses))
}

// stateOf returns the gRPC resolver state for the routed instances of a
// set: one Address and one Endpoint per instance, in the order of set,
// each carrying its instance, its effective weight and its zone as
// attributes (see InstanceFromAddress, WeightFromEndpoint and
// ZoneFromEndpoint). BalancerAttributes stay nil, so addresses compare
// equal exactly when their instances do.
func stateOf(set []discovery.Instance) resolver.State {
	st := resolver.State{
		Addresses: make([]resolver.Address, 0, len(set)),
		Endpoints: make([]resolver.Endpoint, 0, len(set)),
	}
	for _, in := range set {
		attrs := attributes.New(instanceKey{}, instanceValue{in.Clone()}).
			WithValue(weightKey{}, in.EffectiveWeight()).
			WithValue(zoneKey{}, in.Zone)
		addr := resolver.Address{Addr: in.Address, Attributes: attrs}
		st.Addresses = append(st.Addresses, addr)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{addr}, Attributes: attrs})
	}
	return st
}

// instanceKey is the attributes key of the instance of an address.
type instanceKey struct{}

// weightKey and zoneKey are the attributes keys of an address's
// discovery.Instance EffectiveWeight (an int) and Zone (a string).
type (
	weightKey struct{}
	zoneKey   struct{}
)

// WeightFromEndpoint returns the weight of the instance behind ep (its
// discovery.Instance.EffectiveWeight: DefaultWeight when unset), for
// weighted load-balancing policies; ok is false if ep carries none.
func WeightFromEndpoint(ep resolver.Endpoint) (weight int, ok bool) {
	weight, ok = ep.Attributes.Value(weightKey{}).(int)
	return weight, ok
}

// ZoneFromEndpoint returns the zone of the instance behind ep ("" when it
// has none), for locality-aware policies; ok is false if ep carries none.
func ZoneFromEndpoint(ep resolver.Endpoint) (zone string, ok bool) {
	zone, ok = ep.Attributes.Value(zoneKey{}).(string)
	return zone, ok
}

// instanceValue holds an instance in attributes. It is never modified, and
// compares by value (Instance holds a map, which == cannot compare).
type instanceValue struct{ in discovery.Instance }

// Equal lets attributes.Attributes.Equal compare instances.
func (v instanceValue) Equal(o any) bool {
	ov, ok := o.(instanceValue)
	return ok && v.in.Equal(ov.in)
}

// String names the instance in gRPC's logs.
func (v instanceValue) String() string { return v.in.Key().String() }

// InstanceFromAddress returns a copy of the discovery.Instance that a
// resolver of this package attached to addr, for pickers, interceptors and
// tests; ok is false if addr carries none.
func InstanceFromAddress(addr resolver.Address) (in discovery.Instance, ok bool) {
	return instanceFrom(addr.Attributes)
}

// InstanceFromEndpoint is InstanceFromAddress for the endpoints that gRPC
// hands to load-balancing policies.
func InstanceFromEndpoint(ep resolver.Endpoint) (in discovery.Instance, ok bool) {
	if in, ok := instanceFrom(ep.Attributes); ok {
		return in, true
	}
	for _, addr := range ep.Addresses {
		if in, ok := instanceFrom(addr.Attributes); ok {
			return in, true
		}
	}
	return discovery.Instance{}, false
}

func instanceFrom(attrs *attributes.Attributes) (discovery.Instance, bool) {
	v, ok := attrs.Value(instanceKey{}).(instanceValue)
	if !ok {
		return discovery.Instance{}, false
	}
	return v.in.Clone(), true
}
