package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roster-sd/roster/discovery"
)

// invalidService is the service label of calls made with an invalid
// service name, so that garbage names do not grow the label set.
const invalidService = "(invalid)"

// Resolver is a discovery.Resolver that counts the calls it forwards to
// another one in its Collector's metrics: Resolve's latency and errors,
// the watchers open and the sets their Next delivers. Make one with
// Collector.Resolver. It is safe for concurrent use.
type Resolver struct {
	next discovery.Resolver
	c    *Collector
}

var _ discovery.Resolver = (*Resolver)(nil)

// Resolver returns r instrumented with c's metrics (roster_resolve_*,
// roster_watch_updates_total, roster_watchers). The wrapper adds a clock
// read and a few atomic operations to each call, and holds nothing that
// needs closing; r stays the caller's to close.
func (c *Collector) Resolver(r discovery.Resolver) *Resolver {
	return &Resolver{next: r, c: c}
}

// serviceMetrics are the metrics of one service, looked up once.
type serviceMetrics struct {
	duration prometheus.Observer
	errors   prometheus.Counter
	updates  prometheus.Counter
	watchers prometheus.Gauge
}

// forService returns the metrics of service, creating them on first use.
func (c *Collector) forService(service string) *serviceMetrics {
	if m, ok := c.perService.Load(service); ok {
		return m.(*serviceMetrics)
	}
	label := service
	if discovery.ValidateName("Service", service) != nil {
		label = invalidService
	}
	m := &serviceMetrics{
		duration: c.resolveDur.WithLabelValues(label),
		errors:   c.resolveErrs.WithLabelValues(label),
		updates:  c.updates.WithLabelValues(label),
		watchers: c.watchers.WithLabelValues(label),
	}
	if label == invalidService {
		return m // not kept: the map stays bounded by valid names
	}
	actual, _ := c.perService.LoadOrStore(service, m)
	return actual.(*serviceMetrics)
}

// Resolve implements discovery.Resolver.
func (r *Resolver) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	m := r.c.forService(service)
	start := time.Now()
	set, err := r.next.Resolve(ctx, service)
	m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.Inc()
	}
	return set, err
}

// Watch implements discovery.Resolver. The watcher counts in
// roster_watchers from now until Stop, until ctx ends or until its Next
// reports that it is closed.
func (r *Resolver) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	w, err := r.next.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	m := r.c.forService(service)
	m.watchers.Inc()
	iw := &watcher{next: w, m: m}
	iw.stopAfter = context.AfterFunc(ctx, iw.release)
	return iw, nil
}

// watcher counts what its Watcher delivers.
type watcher struct {
	next      discovery.Watcher
	m         *serviceMetrics
	stopAfter func() bool // unregisters release from the Watch context
	once      sync.Once
}

// Next implements discovery.Watcher.
func (w *watcher) Next(ctx context.Context) ([]discovery.Instance, error) {
	set, err := w.next.Next(ctx)
	switch {
	case err == nil:
		w.m.updates.Inc()
	case errors.Is(err, discovery.ErrClosed):
		w.release()
	}
	return set, err
}

// Stop implements discovery.Watcher.
func (w *watcher) Stop() {
	w.next.Stop()
	w.stopAfter()
	w.release()
}

// release takes the watcher off roster_watchers, once.
func (w *watcher) release() {
	w.once.Do(w.m.watchers.Dec)
}
