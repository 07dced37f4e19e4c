package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
)

// Option configures what only code sets; see Config for the probe
// parameters.
type Option func(*options)

type options struct {
	logger   hclog.Logger
	observer func(err error, took time.Duration)
}

// WithLogger sets the logger; the default discards everything.
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.logger = l } }

// WithObserver has f called after every check, with its error (nil when
// it passed) and how long it took; f(err, took) is what
// metrics.Collector.ObserveCheck takes, which exports them. A check that
// outlived Config.Timeout fails with an error whose Timeout method
// reports true, as a net.Error's does; a check that Close cuts short is
// not reported. f is called on the Registrar's
// checking goroutine, one call at a time, and must not block: the next
// check waits for it.
func WithObserver(f func(err error, took time.Duration)) Option {
	return func(o *options) { o.observer = f }
}

// held is one instance registered through the Registrar.
type held struct {
	base      discovery.Instance // as the application registered it, normalized
	draining  bool               // registered with ConditionDraining: checks leave it alone
	published discovery.Instance // what the inner Registrar last accepted
}

// Registrar is a discovery.Registrar that publishes the instances
// registered through it in the condition its Check gives, on another
// Registrar (the inner one, such as a backend). It is safe for concurrent
// use. Close deregisters its instances from the inner Registrar and stops
// its goroutines; it does not close the inner Registrar, which stays the
// caller's.
type Registrar struct {
	inner discovery.Registrar
	check Check
	cfg   Config
	log   hclog.Logger
	obs   func(err error, took time.Duration) // nil: none

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // cap 1: the publisher has work
	sem    chan struct{} // cap 1: one write to inner at a time, in order

	mu     sync.Mutex
	m      machine
	held   map[discovery.Key]*held
	closed bool
}

var _ discovery.Registrar = (*Registrar)(nil)

// New returns a Registrar that publishes on inner, gated on check with
// the parameters of cfg (zero fields take the defaults). Checks start at
// once (after cfg.InitialDelay), whether or not anything is registered.
// An invalid cfg is an error wrapping ErrInvalidConfig.
func New(inner discovery.Registrar, check Check, cfg Config, opts ...Option) (*Registrar, error) {
	if inner == nil || check == nil {
		return nil, fmt.Errorf("%w: the inner Registrar and the Check must not be nil", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	o := options{logger: hclog.NewNullLogger()}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Registrar{
		inner: inner, check: check, cfg: cfg, log: o.logger, obs: o.observer,
		wake: make(chan struct{}, 1), sem: make(chan struct{}, 1),
		m: newMachine(cfg), held: make(map[discovery.Key]*held),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Go(r.probe)
	r.wg.Go(r.publish)
	return r, nil
}

// Result returns the latest check's outcome and the condition the checks
// give.
func (r *Registrar) Result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.res
}

// desiredLocked is h's instance in the condition it should be published in.
func (r *Registrar) desiredLocked(h *held) discovery.Instance {
	in := h.base.Clone()
	if !h.draining {
		in.Condition, in.Reason = r.m.res.Condition, r.m.res.Reason
	}
	return in
}

// Register publishes in on the inner Registrar, in the condition the
// checks give (not ready until they first pass), and keeps its condition
// up to date until Deregister or Close. Its Condition and Reason are
// replaced by the checks', unless it is discovery.ConditionDraining: a
// draining instance stays as registered. It returns once the inner
// Registrar's Register does.
func (r *Registrar) Register(ctx context.Context, in discovery.Instance) error {
	in, err := in.Normalize()
	if err != nil {
		return fmt.Errorf("health: register: %w", err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("health: register %s: %w", in.Key(), discovery.ErrClosed)
	}
	h := &held{base: in, draining: in.Condition == discovery.ConditionDraining}
	want := r.desiredLocked(h)
	r.mu.Unlock()

	if err := r.write(ctx, func(ctx context.Context) error { return r.inner.Register(ctx, want) }); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		// Close ran meanwhile and did not know of it: take it back out.
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout+r.cfg.Period)
		defer cancel()
		_ = r.inner.Deregister(ctx, want)
		return fmt.Errorf("health: register %s: %w", in.Key(), discovery.ErrClosed)
	}
	h.published = want
	r.held[in.Key()] = h
	if !r.desiredLocked(h).Equal(want) {
		r.poke() // the checks moved while it was written
	}
	return nil
}

// Deregister removes in from the inner Registrar and stops following it.
func (r *Registrar) Deregister(ctx context.Context, in discovery.Instance) error {
	key := in.Key()
	if key.ID == "" {
		key.ID = discovery.IDFromAddress(in.Address)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("health: deregister %s: %w", key, discovery.ErrClosed)
	}
	delete(r.held, key)
	r.mu.Unlock()
	return r.write(ctx, func(ctx context.Context) error {
		return r.inner.Deregister(ctx, discovery.Instance{Service: key.Service, ID: key.ID, Address: in.Address})
	})
}

// Close stops the checks, deregisters every instance registered through r
// from the inner Registrar (each bounded by the inner Deregister) and
// returns once its goroutines have stopped. The inner Registrar stays
// open. Close is idempotent.
func (r *Registrar) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	keys := make([]discovery.Key, 0, len(r.held))
	for k := range r.held {
		keys = append(keys, k)
	}
	r.held = nil
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	var errs []error
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout+r.cfg.Period)
		err := r.inner.Deregister(ctx, discovery.Instance{Service: k.Service, ID: k.ID})
		cancel()
		if err != nil && !errors.Is(err, discovery.ErrNotRegistered) && !errors.Is(err, discovery.ErrClosed) {
			errs = append(errs, fmt.Errorf("health: deregister %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// write runs one call on the inner Registrar, in turn with the others.
func (r *Registrar) write(ctx context.Context, call func(context.Context) error) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()
	return call(ctx)
}

func (r *Registrar) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// probe runs the checks until Close.
func (r *Registrar) probe() {
	t := time.NewTimer(r.cfg.InitialDelay)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		err := runCheck(r.ctx, r.check, r.cfg.Timeout)
		if r.ctx.Err() != nil {
			return
		}
		took := time.Since(start)
		if r.obs != nil {
			r.obs(err, took)
		}
		r.mu.Lock()
		prev := r.m.res.Condition
		changed := r.m.observe(start, took, err)
		res := r.m.res
		r.mu.Unlock()
		if changed {
			if res.Condition != prev {
				r.log.Info("health check moved the condition", "condition", res.Condition, "reason", res.Reason)
			}
			r.poke()
		}
		t.Reset(max(0, r.cfg.Period-time.Since(start)))
	}
}

// publish writes the instances whose published condition differs from the
// one they should have, until Close. A failed write is retried a Period
// later.
func (r *Registrar) publish() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		case <-retry.C:
		}
		if !r.publishOnce() {
			retry.Reset(r.cfg.Period)
		}
	}
}

// publishOnce writes every out-of-date instance once and reports whether
// all writes succeeded.
func (r *Registrar) publishOnce() bool {
	r.mu.Lock()
	var todo []discovery.Instance
	for _, h := range r.held {
		if want := r.desiredLocked(h); !want.Equal(h.published) {
			todo = append(todo, want)
		}
	}
	r.mu.Unlock()
	ok := true
	for _, want := range todo {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Period+r.cfg.Timeout)
		err := r.write(ctx, func(ctx context.Context) error {
			// Still held, and still wanted so? A Deregister or a newer
			// Register may have come first.
			r.mu.Lock()
			h := r.held[want.Key()]
			stale := h == nil || !r.desiredLocked(h).Equal(want)
			r.mu.Unlock()
			if stale {
				return nil
			}
			if err := r.inner.Register(ctx, want); err != nil {
				return err
			}
			r.mu.Lock()
			if h := r.held[want.Key()]; h != nil {
				h.published = want
			}
			r.mu.Unlock()
			return nil
		})
		cancel()
		if err != nil && r.ctx.Err() == nil {
			ok = false
			r.log.Warn("cannot publish the condition; retrying", "instance", want.Key(), "condition", want.Condition, "retry_in", r.cfg.Period, "error", err)
		}
	}
	if ok {
		// A change that came in while writing is caught by its own poke.
		return true
	}
	return false
}
