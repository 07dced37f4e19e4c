package metrics

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
)

// Namespace is the prefix of every metric name: roster_.
const Namespace = "roster"

// reportedStates returns the states roster_registrations has a series
// for: every state a held registration can be in.
func reportedStates() []discovery.State {
	return []discovery.State{
		discovery.StateRegistering,
		discovery.StateRegistered,
		discovery.StateRetrying,
		discovery.StateLost,
		discovery.StateConflict,
	}
}

// recoveryBuckets resolve the sub-second recoveries of a registry blip
// (roster is back within a few hundred milliseconds of etcd) as well as
// the ones that wait out the retry policy's 30 s cap, up to 5 minutes.
func recoveryBuckets() []float64 {
	return []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 120, 300}
}

// resolveBuckets go from a cached Resolve (microseconds) to a slow
// registry (seconds).
func resolveBuckets() []float64 {
	return []float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}
}

// checkBuckets go from a local TCP connect (a millisecond) to a check that
// runs into a long timeout (10 s).
func checkBuckets() []float64 {
	return []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// Outcomes of a health check, the values of the outcome label of
// roster_health_checks_total (see Collector.ObserveCheck).
const (
	CheckPass    = "pass"
	CheckFail    = "fail"
	CheckTimeout = "timeout"
)

// Collector is a prometheus.Collector of roster's metrics (see the package
// documentation). New makes one; register it on the application's
// prometheus.Registerer and Close it when done. It is safe for concurrent
// use.
type Collector struct {
	status discovery.StatusReporter // nil: no registration metrics
	facts  discovery.FactsReporter  // nil: no backend metrics
	cache  *cache.Resolver          // nil: no cache metrics

	registrations  *prometheus.Desc
	instances      *prometheus.Desc
	connected      *prometheus.Desc
	retryAttempts  *prometheus.Desc
	leaseRemaining *prometheus.Desc
	keepAliveRTT   *prometheus.Desc
	cacheStale     *prometheus.Desc
	cacheAge       *prometheus.Desc
	cacheInstances *prometheus.Desc

	transitions *prometheus.CounterVec
	recovery    *prometheus.HistogramVec
	resolveDur  *prometheus.HistogramVec
	resolveErrs *prometheus.CounterVec
	updates     *prometheus.CounterVec
	watchers    *prometheus.GaugeVec
	checks      *prometheus.CounterVec
	checkDur    prometheus.Histogram
	checked     atomic.Bool // a check was observed: export checks and checkDur

	sub       discovery.StatusSubscription // nil without status
	cancel    context.CancelFunc
	done      chan struct{} // closed when the subscription's reader ends
	closeOnce sync.Once

	mu       sync.Mutex
	services map[string]struct{}          // every service a registration was seen in
	regs     map[discovery.Key]regHistory // by the subscription's reader

	perService sync.Map // service -> *serviceMetrics, for the Resolver wrapper
}

// regHistory is what the Collector remembers of one registration.
type regHistory struct {
	state discovery.State
	// left is when the registration last left StateRegistered, while it
	// has not come back; zero otherwise.
	left time.Time
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector of the registrations of status (nil for a
// process that registers nothing and only resolves), and starts the
// goroutine that follows them until Close. The backend metrics come from
// status if it implements discovery.FactsReporter (see WithFacts).
func New(status discovery.StatusReporter, opts ...Option) *Collector {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if !o.factsSet {
		o.facts, _ = status.(discovery.FactsReporter)
	}
	name := func(n string) string { return Namespace + "_" + n }
	svc := []string{"service"}
	c := &Collector{
		status: status,
		facts:  o.facts,
		cache:  o.cache,

		registrations: prometheus.NewDesc(name("registrations"),
			"Registrations held by this process, by service and state (registering, registered, retrying, lost, conflict).",
			[]string{"service", "state"}, nil),
		instances: prometheus.NewDesc(name("instances"),
			"Instances held by this process, by service and the condition they publish (serving, not_ready, draining).",
			[]string{"service", "condition"}, nil),
		connected: prometheus.NewDesc(name("backend_connected"),
			"1 if the backend has a usable connection to its registry, else 0.", nil, nil),
		retryAttempts: prometheus.NewDesc(name("backend_retry_attempts_total"),
			"Failed attempts of the backend to keep its registrations published; each is retried after a backoff delay.", nil, nil),
		leaseRemaining: prometheus.NewDesc(name("lease_remaining_seconds"),
			"How long the registry keeps the backend's lease without another renewal, as of the last renewal it answered; 0 once expired.", nil, nil),
		keepAliveRTT: prometheus.NewDesc(name("lease_keepalive_rtt_seconds"),
			"Round trip of the last lease renewal (keep-alive) the registry answered.", nil, nil),
		cacheStale: prometheus.NewDesc(name("cache_stale"),
			"1 while the cache serves a set of the service that its upstream cannot confirm (the registry is failing), else 0.", svc, nil),
		cacheAge: prometheus.NewDesc(name("cache_age_seconds"),
			"Time since the upstream last confirmed the cached set of the service; 0 while the upstream watch is healthy.", svc, nil),
		cacheInstances: prometheus.NewDesc(name("cache_instances"),
			"Instances in the cached set of the service.", svc, nil),

		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "registration_transitions_total",
			Help: "Entries of registrations into the retrying, lost or conflict state, by service, state and cause (unavailable, removed, conflict, timeout, canceled, other).",
		}, []string{"service", "state", "cause"}),
		recovery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "registration_recovery_seconds",
			Help:    "Time from a registration leaving the registered state to being registered again.",
			Buckets: recoveryBuckets(),
		}, svc),
		resolveDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "resolve_duration_seconds",
			Help:    "Latency of Resolve calls, failed ones included; its _count counts the calls.",
			Buckets: resolveBuckets(),
		}, svc),
		resolveErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "resolve_errors_total",
			Help: "Resolve calls that returned an error.",
		}, svc),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "watch_updates_total",
			Help: "Instance sets delivered by the Next of watchers.",
		}, svc),
		watchers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "watchers",
			Help: "Watchers open (from Watch until Stop, the end of their context, or their closing).",
		}, svc),

		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "health_checks_total",
			Help: "Health checks run by the process's health-gated registration, by outcome (pass, fail, timeout).",
		}, []string{"outcome"}),
		checkDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "health_check_duration_seconds",
			Help:    "Duration of the health checks, whatever their outcome.",
			Buckets: checkBuckets(),
		}),

		services: make(map[string]struct{}),
		regs:     make(map[discovery.Key]regHistory),
		done:     make(chan struct{}),
	}
	if status == nil {
		close(c.done)
		c.cancel = func() {}
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.sub = status.SubscribeStatus()
	go c.follow(ctx)
	return c
}

// Close stops following the registrations and waits for the goroutine
// that did. The Collector still answers scrapes afterwards (its gauges
// are read from the backend); its transition and recovery metrics no
// longer change. Close is idempotent and returns nil.
func (c *Collector) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		if c.sub != nil {
			c.sub.Stop()
		}
		<-c.done
	})
	return nil
}

// follow reads the status subscription until Close or the end of the
// backend.
func (c *Collector) follow(ctx context.Context) {
	defer close(c.done)
	for {
		st, err := c.sub.Next(ctx)
		if err != nil {
			return
		}
		c.observe(st)
	}
}

// observe records one status change.
func (c *Collector) observe(st discovery.Status) {
	key := st.Instance.Key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.services[key.Service]; !ok {
		c.services[key.Service] = struct{}{}
		c.recovery.WithLabelValues(key.Service) // a series from the start, for rate()
	}
	prev, known := c.regs[key]
	switch st.State {
	case discovery.StateDeregistered:
		delete(c.regs, key)
		return
	case discovery.StateRetrying, discovery.StateLost, discovery.StateConflict:
		if !known || prev.state != st.State {
			c.transitions.WithLabelValues(key.Service, st.State.String(), Cause(st.Err)).Inc()
		}
		if known && prev.state == discovery.StateRegistered {
			prev.left = st.Since
		}
	case discovery.StateRegistered:
		if !prev.left.IsZero() {
			c.recovery.WithLabelValues(key.Service).Observe(max(0, st.Since.Sub(prev.left)).Seconds())
			prev.left = time.Time{}
		}
	}
	prev.state = st.State
	c.regs[key] = prev
}

// ObserveCheck records one health check: its error (nil when it passed)
// and how long it took. Its signature is the one health.WithObserver
// takes, so that a health.Registrar reports every check to the Collector:
//
//	gate, err := health.New(backend, check, cfg, health.WithObserver(col.ObserveCheck))
//
// (the fx module does this when the application provides a
// prometheus.Registerer). A failure whose error has a Timeout method
// reporting true, as health's timeouts and net.Error's do, counts as a
// timeout. Until the first call, the Collector exports no health check
// metrics; from then on, a series for each outcome. It is safe for
// concurrent use.
func (c *Collector) ObserveCheck(err error, took time.Duration) {
	if !c.checked.Load() {
		for _, o := range []string{CheckPass, CheckFail, CheckTimeout} {
			c.checks.WithLabelValues(o) // every outcome from the start, for rate()
		}
		c.checked.Store(true)
	}
	c.checks.WithLabelValues(checkOutcome(err)).Inc()
	c.checkDur.Observe(max(0, took).Seconds())
}

// checkOutcome is the outcome label of a check that ended with err.
func checkOutcome(err error) string {
	var t interface{ Timeout() bool }
	switch {
	case err == nil:
		return CheckPass
	case errors.As(err, &t) && t.Timeout():
		return CheckTimeout
	}
	return CheckFail
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.registrations, c.instances, c.connected, c.retryAttempts, c.leaseRemaining,
		c.keepAliveRTT, c.cacheStale, c.cacheAge, c.cacheInstances} {
		ch <- d
	}
	c.transitions.Describe(ch)
	c.recovery.Describe(ch)
	c.resolveDur.Describe(ch)
	c.resolveErrs.Describe(ch)
	c.updates.Describe(ch)
	c.watchers.Describe(ch)
	c.checks.Describe(ch)
	c.checkDur.Describe(ch)
}

// Collect implements prometheus.Collector. It reads the registrations'
// states, the backend's facts and the cache's sets as they are now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.status != nil {
		c.collectRegistrations(ch)
	}
	if c.facts != nil {
		c.collectFacts(ch)
	}
	if c.cache != nil {
		c.collectCache(ch)
	}
	c.transitions.Collect(ch)
	c.recovery.Collect(ch)
	c.resolveDur.Collect(ch)
	c.resolveErrs.Collect(ch)
	c.updates.Collect(ch)
	c.watchers.Collect(ch)
	if c.checked.Load() {
		c.checks.Collect(ch)
		c.checkDur.Collect(ch)
	}
}

func (c *Collector) collectRegistrations(ch chan<- prometheus.Metric) {
	type cell struct {
		service string
		state   discovery.State
	}
	type condCell struct {
		service   string
		condition discovery.Condition
	}
	counts := make(map[cell]int)
	conds := make(map[condCell]int)
	services := make(map[string]struct{})
	c.mu.Lock()
	for s := range c.services {
		services[s] = struct{}{}
	}
	c.mu.Unlock()
	for _, st := range c.status.Statuses() {
		services[st.Instance.Service] = struct{}{}
		counts[cell{st.Instance.Service, st.State}]++
		conds[condCell{st.Instance.Service, st.Instance.Condition}]++
	}
	states := reportedStates()
	for s := range services {
		for _, state := range states {
			ch <- prometheus.MustNewConstMetric(c.registrations, prometheus.GaugeValue,
				float64(counts[cell{s, state}]), s, state.String())
		}
		for _, cond := range []discovery.Condition{discovery.ConditionServing, discovery.ConditionNotReady, discovery.ConditionDraining} {
			ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue,
				float64(conds[condCell{s, cond}]), s, cond.String())
		}
	}
}

func (c *Collector) collectFacts(ch chan<- prometheus.Metric) {
	f := c.facts.BackendFacts()
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, boolValue(f.Connected))
	ch <- prometheus.MustNewConstMetric(c.retryAttempts, prometheus.CounterValue, float64(f.RetryAttempts))
	if f.HasLease {
		ch <- prometheus.MustNewConstMetric(c.leaseRemaining, prometheus.GaugeValue, f.LeaseRemaining.Seconds())
		ch <- prometheus.MustNewConstMetric(c.keepAliveRTT, prometheus.GaugeValue, f.KeepAliveRTT.Seconds())
	}
}

func (c *Collector) collectCache(ch chan<- prometheus.Metric) {
	for _, s := range c.cache.Services() {
		set, age, stale, ok := c.cache.Snapshot(s)
		if !ok {
			continue // no set yet
		}
		ch <- prometheus.MustNewConstMetric(c.cacheStale, prometheus.GaugeValue, boolValue(stale), s)
		ch <- prometheus.MustNewConstMetric(c.cacheAge, prometheus.GaugeValue, age.Seconds(), s)
		ch <- prometheus.MustNewConstMetric(c.cacheInstances, prometheus.GaugeValue, float64(len(set)), s)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
