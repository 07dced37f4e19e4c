package fxmodule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/metrics"
	"github.com/roster-sd/roster/retry"
)

// RegistrationParams are the inputs of NewRegistration.
type RegistrationParams struct {
	fx.In

	// Lifecycle receives the Registration's start and stop hooks. Outside
	// fx it may be nil; call Start and Stop yourself.
	Lifecycle fx.Lifecycle
	// Registrar is the backend the instances are registered with.
	Registrar discovery.Registrar
	// Instances are the application's own instances: the value group
	// "roster.instances" (see Instance and ProvideInstance).
	Instances []discovery.Instance `group:"roster.instances"`

	// Config gives RequireRegistration, DrainDelay, Weight, Zone, Timeout, Retry and
	// Health: the Config Module loaded once (LoadConfig). Outside fx, a
	// zero Config means LoadConfig's: ConfigFromEnv(os.LookupEnv).
	Config Config `name:"roster.config" optional:"true"`
	// Logger is the application's logger. Default: an hclog logger
	// writing to stderr at info level.
	Logger hclog.Logger `optional:"true"`
	// HealthCheck, when the application provides one, gates the
	// registration of its instances (see HealthConfig), with the probe
	// parameters of Config.Health.Probe. It wins over a check named in
	// Config.Health.
	HealthCheck health.Check `optional:"true"`
	// Metrics, when not nil, receives every health check's outcome and
	// duration (metrics.Collector.ObserveCheck). Module provides the
	// collector it registered on the application's
	// prometheus.Registerer (RegisterMetrics), nil without one.
	Metrics *metrics.Collector `optional:"true"`
}

// Registration registers the application's own instances when the
// application starts and deregisters them when it stops. NewRegistration
// makes one and, under fx, hooks Start and Stop into the lifecycle.
//
// By default Start does not wait for the registry: it starts one
// goroutine per instance that calls Register with a context that Stop
// cancels, and calls it again, with the Config's retry policy, when it
// fails, for as long as it runs; but not when it fails with
// discovery.ErrNotRegistered, which means that the application
// deregistered the instance meanwhile: the Registration then leaves it
// deregistered. Meanwhile the backend's discovery.StatusReporter reports
// the registration as registering, then retrying (the etcd backend holds a
// pending registration and retries it itself until etcd answers). With
// Config.RequireRegistration, Start registers every instance before it
// returns, within its context and Config.Timeout, and fails otherwise.
//
// Stop stops those goroutines; with Config.DrainDelay it publishes every
// instance that was registered as draining and waits DrainDelay; then it
// deregisters them (bounded by Config.Timeout), so that the application
// leaves the registry before it stops serving.
// Start and Stop take the context of fx's start and stop hooks; outside
// fx, pass a context that bounds them.
//
// With a health check (Config.Health, or a health.Check in the graph),
// Start puts a health.Registrar between the instances and the backend:
// they are published not ready until the check passes, and move between
// serving and not ready with it; Stop closes it after deregistering.
//
// A Registration is safe for concurrent use.
type Registration struct {
	reg       discovery.Registrar // the backend, or gate once started with a health check
	backend   discovery.Registrar
	check     health.Check       // nil: none given in the graph
	metrics   *metrics.Collector // nil: no metrics of the checks
	instances []discovery.Instance
	cfg       Config
	log       hclog.Logger

	ready   chan struct{} // closed once every instance has been registered
	stopped chan struct{} // closed once Stop has stopped the goroutines
	wg      sync.WaitGroup

	mu         sync.Mutex
	gate       *health.Registrar // with a health check, from Start on
	closeCheck func()            // releases a check Start made from Config.Health
	started    bool
	stopping   bool
	cancel     context.CancelFunc     // ends the registering goroutines
	registered map[discovery.Key]bool // registered by the Registration; Stop deregisters them
	settled    map[discovery.Key]bool // registered once, or withdrawn by the application; ready when all are

	stopOnce sync.Once
	stopErr  error
}

// NewRegistration returns a Registration of p.Instances with p.Registrar.
// Instances declared without a Weight or a Zone take Config.Weight and
// Config.Zone. Instances are normalized (an empty ID is derived from the
// address); an
// invalid instance gives an error wrapping discovery.ErrInvalidInstance,
// and two different instances with the same service and ID an error
// wrapping ErrInvalidConfig. With a Lifecycle, its Start and Stop are
// appended as a hook.
func NewRegistration(p RegistrationParams) (*Registration, error) {
	if p.Registrar == nil {
		return nil, configError("Registration needs a Registrar")
	}
	cfg, err := LoadConfig(p.Config)
	if err != nil {
		return nil, err
	}

	var instances []discovery.Instance
	for _, in := range p.Instances {
		in = cfg.serving(in)
		n, err := in.Normalize()
		if err != nil {
			return nil, fmt.Errorf("fxmodule: instance: %w", err)
		}
		i := slices.IndexFunc(instances, func(x discovery.Instance) bool { return x.Key() == n.Key() })
		switch {
		case i < 0:
			instances = append(instances, n)
		case !instances[i].Equal(n):
			return nil, configError("instance %s is declared twice, with different values", n.Key())
		}
	}
	r := &Registration{
		reg:        p.Registrar,
		backend:    p.Registrar,
		check:      p.HealthCheck,
		metrics:    p.Metrics,
		instances:  instances,
		cfg:        cfg,
		log:        moduleLogger(p.Logger),
		ready:      make(chan struct{}),
		stopped:    make(chan struct{}),
		registered: make(map[discovery.Key]bool),
		settled:    make(map[discovery.Key]bool),
	}
	if len(instances) == 0 {
		close(r.ready)
	}
	if p.Lifecycle != nil {
		p.Lifecycle.Append(fx.StartStopHook(r.Start, r.Stop))
	}
	return r, nil
}

// Start registers the instances: in the background by default, or before
// it returns with Config.RequireRegistration, in which case an instance
// not registered within ctx and Config.Timeout makes it fail with an error
// naming the instance (after deregistering those it had registered).
// Start may be called once.
func (r *Registration) Start(ctx context.Context) error {
	runCtx, err := r.begin()
	if err != nil || !r.cfg.RequireRegistration {
		return err
	}
	// Bounded by Timeout, not only by ctx, so that fx still has time to
	// roll back the hooks that started before this one; and ended by Stop.
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	defer context.AfterFunc(runCtx, cancel)()
	for _, in := range r.instances {
		if err := r.registrar().Register(ctx, in); err != nil {
			dctx, dcancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
			_, _ = r.deregister(dctx)
			dcancel()
			return fmt.Errorf("fxmodule: register %s (%s) at start, as Config.RequireRegistration asks: %w",
				in.Key(), in.Address, err)
		}
		r.registeredOne(in)
	}
	return nil
}

// begin marks the Registration started and returns the context that Stop
// cancels; without RequireRegistration it also starts one registering
// goroutine per instance.
func (r *Registration) begin() (context.Context, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.started:
		return nil, fmt.Errorf("fxmodule: registration started twice")
	case r.stopping:
		return nil, fmt.Errorf("fxmodule: start registration: %w", discovery.ErrClosed)
	}
	if err := r.startHealthLocked(); err != nil {
		return nil, err
	}
	r.started = true
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if !r.cfg.RequireRegistration {
		for _, in := range r.instances {
			r.wg.Go(func() { r.keep(runCtx, in) })
		}
	}
	return runCtx, nil
}

// startHealthLocked puts a health.Registrar between the instances and the
// backend when a check is configured. It runs in Start, not in
// NewRegistration, so that its goroutines exist only once Stop is due.
func (r *Registration) startHealthLocked() error {
	check, closeCheck := r.check, func() {}
	if check == nil {
		var err error
		if check, closeCheck, err = r.cfg.Health.check(); err != nil {
			return err
		}
		if check == nil {
			return nil
		}
	}
	opts := []health.Option{health.WithLogger(r.log.Named("health"))}
	if r.metrics != nil {
		opts = append(opts, health.WithObserver(r.metrics.ObserveCheck))
	}
	gate, err := health.New(r.backend, check, r.cfg.Health.Probe, opts...)
	if err != nil {
		closeCheck()
		return fmt.Errorf("fxmodule: health check: %w", err)
	}
	r.gate, r.closeCheck, r.reg = gate, closeCheck, gate
	return nil
}

// registrar returns what the instances are registered through: the
// backend, or the health gate in front of it.
func (r *Registration) registrar() discovery.Registrar {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reg
}

// HealthResult returns the latest result of the registration's health
// check, and false when it has none (no check configured, or not started).
func (r *Registration) HealthResult() (health.Result, bool) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate == nil {
		return health.Result{}, false
	}
	return gate.Result(), true
}

// keep registers in, retrying until it succeeds or ctx ends. A Register
// that fails with discovery.ErrNotRegistered was withdrawn by a Deregister
// of the application while it was pending: keep then ends without
// registering in again, which would undo the application's choice.
func (r *Registration) keep(ctx context.Context, in discovery.Instance) {
	err := r.cfg.Retry.Do(ctx, func(ctx context.Context) error {
		err := r.registrar().Register(ctx, in)
		if errors.Is(err, discovery.ErrClosed) || errors.Is(err, discovery.ErrInvalidInstance) ||
			errors.Is(err, discovery.ErrNotRegistered) {
			return retry.Permanent(err)
		}
		return err
	}, retry.OnFailure(func(f retry.Failure) {
		r.log.Warn("failed to register instance, retrying", "instance", in.Key().String(),
			"node", in.Address, "attempt", f.Attempt, "retry_in", f.Delay, "error", f.Err)
	}))
	switch {
	case err == nil:
		r.registeredOne(in)
		r.log.Debug("registered instance", "instance", in.Key().String(), "node", in.Address)
	case ctx.Err() == nil && errors.Is(err, discovery.ErrNotRegistered):
		r.settle(in)
		r.log.Info("instance deregistered by the application while it was being registered; no longer registering it",
			"instance", in.Key().String(), "node", in.Address)
	case ctx.Err() == nil:
		r.log.Error("gave up registering instance", "instance", in.Key().String(), "node", in.Address, "error", err)
	}
}

// registeredOne records that in has been registered: Stop deregisters it.
func (r *Registration) registeredOne(in discovery.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered[in.Key()] = true
	r.settleLocked(in)
}

// settle records that the Registration is done with in, registered or
// not, for Wait.
func (r *Registration) settle(in discovery.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settleLocked(in)
}

func (r *Registration) settleLocked(in discovery.Instance) {
	if r.settled[in.Key()] {
		return
	}
	r.settled[in.Key()] = true
	if len(r.settled) == len(r.instances) {
		close(r.ready)
	}
}

// Wait blocks until every instance has been registered once (or, for an
// instance the application deregistered while the Registration was still
// registering it, until that registration was withdrawn) and returns nil,
// or returns ctx's error, or an error wrapping discovery.ErrClosed once
// the Registration has stopped. It says nothing about later outages: for
// those, read the backend's discovery.StatusReporter.
func (r *Registration) Wait(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	default:
	}
	select {
	case <-r.ready:
		return nil
	case <-r.stopped:
		return fmt.Errorf("fxmodule: registration stopped: %w", discovery.ErrClosed)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops registering; with Config.DrainDelay, publishes every
// instance that was registered in discovery.ConditionDraining and waits
// DrainDelay (bounded by ctx); then deregisters them (bounded by
// Config.Timeout, and by ctx unless ctx ended while draining). It is
// idempotent; later calls return the first call's error.
func (r *Registration) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopping = true
		cancel := r.cancel
		r.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		r.wg.Wait()
		close(r.stopped)

		var drainErr error
		if r.cfg.DrainDelay > 0 {
			drainErr = r.drain(ctx)
		}
		// Deregister even when ctx ended while draining: leaving matters
		// more than the wait.
		if ctx.Err() != nil {
			ctx = context.WithoutCancel(ctx)
		}
		dctx, dcancel := context.WithTimeout(ctx, r.cfg.Timeout)
		_, err := r.deregister(dctx)
		dcancel()
		r.mu.Lock()
		gate, closeCheck := r.gate, r.closeCheck
		r.mu.Unlock()
		if gate != nil {
			err = errors.Join(err, gate.Close()) // stops the checks
			closeCheck()
		}
		r.stopErr = errors.Join(drainErr, err)
	})
	return r.stopErr
}

// drain publishes every registered instance in discovery.ConditionDraining
// (bounded by ctx and Config.Timeout), then waits Config.DrainDelay
// (bounded by ctx) if it published any.
func (r *Registration) drain(ctx context.Context) error {
	r.mu.Lock()
	var todo []discovery.Instance
	for _, in := range r.instances {
		if r.registered[in.Key()] {
			todo = append(todo, in)
		}
	}
	r.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	dctx, dcancel := context.WithTimeout(ctx, r.cfg.Timeout)
	var errs []error
	for _, in := range todo {
		in = in.Clone()
		in.Condition = discovery.ConditionDraining
		if in.Reason == "" {
			in.Reason = discovery.DrainReason
		}
		if err := r.registrar().Register(dctx, in); err != nil {
			errs = append(errs, fmt.Errorf("fxmodule: drain %s: %w", in.Key(), err))
		}
	}
	dcancel()
	r.log.Info("draining before deregistering", "instances", len(todo), "drain_delay", r.cfg.DrainDelay)
	_ = retry.Sleep(ctx, r.cfg.DrainDelay, nil)
	return errors.Join(errs...)
}

// deregister removes every registered instance and returns how many it
// removed.
func (r *Registration) deregister(ctx context.Context) (int, error) {
	r.mu.Lock()
	var todo []discovery.Instance
	for _, in := range r.instances {
		if r.registered[in.Key()] {
			todo = append(todo, in)
		}
	}
	clear(r.registered)
	r.mu.Unlock()

	n := 0
	var errs []error
	for _, in := range todo {
		err := r.registrar().Deregister(ctx, in)
		switch {
		case err == nil:
			n++
		case errors.Is(err, discovery.ErrNotRegistered), errors.Is(err, discovery.ErrClosed):
			// Already gone: nothing to do.
		default:
			errs = append(errs, fmt.Errorf("fxmodule: deregister %s: %w", in.Key(), err))
		}
	}
	if n > 0 {
		r.log.Debug("deregistered instances", "instances", n)
	}
	return n, errors.Join(errs...)
}

// serving returns in with the Config's Weight and Zone where it has none.
func (c Config) serving(in discovery.Instance) discovery.Instance {
	if in.Weight == 0 {
		in.Weight = c.Weight
	}
	if in.Zone == "" {
		in.Zone = c.Zone
	}
	return in
}
