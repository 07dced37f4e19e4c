// Package retry is roster's shared retry policy: exponential backoff from a
// base delay to a cap, with jitter, on top of github.com/sethvargo/go-retry.
//
// A Policy is a value; Policy.Backoff builds a fresh Backoff for each retry
// sequence (Backoff values keep state), and Policy.Do runs an operation until
// it succeeds, fails permanently or its context ends, reporting every
// failure and the delay before the next try. A Policy never gives up on its
// own: roster keeps its registrations and watches alive for as long as the
// process wants them.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	goretry "github.com/sethvargo/go-retry"
)

// Defaults of the policy returned by Default.
const (
	DefaultBase   = 1 * time.Second
	DefaultMax    = 30 * time.Second
	DefaultJitter = 0.2
)

// ErrInvalidPolicy reports a Policy that Validate rejects.
var ErrInvalidPolicy = errors.New("retry: invalid policy")

// Policy describes one kind of retry sequence: the n-th delay (from 1) is
// Base * 2^(n-1), capped at Max, then reduced by a random fraction of at
// most Jitter, so that it never exceeds Max and a fleet that failed
// together does not retry together.
type Policy struct {
	// Base is the first delay. Zero means DefaultBase.
	Base time.Duration
	// Max caps every delay. Zero means DefaultMax.
	Max time.Duration
	// Jitter is the largest fraction, in [0, 1), by which a delay is
	// randomly shortened. Zero means no jitter; Default uses
	// DefaultJitter.
	Jitter float64
}

// Default returns roster's policy: 1 s, 2 s, 4 s ... capped at 30 s, each
// shortened by up to 20% jitter.
func Default() Policy {
	return Policy{Base: DefaultBase, Max: DefaultMax, Jitter: DefaultJitter}
}

// OrDefault returns p, or Default() if p is the zero Policy (unset).
func (p Policy) OrDefault() Policy {
	if p == (Policy{}) {
		return Default()
	}
	return p
}

// Validate reports a policy that cannot be used. Zero Base and Max are
// valid and mean their defaults.
func (p Policy) Validate() error {
	switch {
	case p.Base < 0:
		return fmt.Errorf("%w: Base is %v; want a positive duration (or zero for %v)", ErrInvalidPolicy, p.Base, DefaultBase)
	case p.Max < 0:
		return fmt.Errorf("%w: Max is %v; want a positive duration (or zero for %v)", ErrInvalidPolicy, p.Max, DefaultMax)
	case p.withDefaults().Max < p.withDefaults().Base:
		// Reported with the defaults filled in, as they would be used.
		return fmt.Errorf("%w: Max (%v) is less than Base (%v)", ErrInvalidPolicy, p.withDefaults().Max, p.withDefaults().Base)
	case !(p.Jitter >= 0 && p.Jitter < 1): // also rejects NaN
		return fmt.Errorf("%w: Jitter is %v; want a fraction in [0, 1)", ErrInvalidPolicy, p.Jitter)
	}
	return nil
}

func (p Policy) withDefaults() Policy {
	if p.Base <= 0 {
		p.Base = DefaultBase
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	return p
}

// Backoff yields the delays of one retry sequence.
type Backoff interface {
	// Next returns the delay before the next attempt. A Policy's Backoff
	// never stops: stop is always false, and once the delays reach the
	// policy's Max they stay there, less jitter. (The method has go-retry's signature,
	// so a Backoff is also a github.com/sethvargo/go-retry Backoff.)
	Next() (delay time.Duration, stop bool)
}

// Backoff returns a fresh Backoff for one retry sequence. Call it again for
// every new sequence: a Backoff remembers its attempts. An invalid policy
// yields a Backoff whose values are clamped into range; check Validate first
// to report it.
func (p Policy) Backoff() Backoff {
	p = p.withDefaults()
	if p.Max < p.Base {
		p.Max = p.Base
	}
	b := goretry.NewExponential(p.Base)
	b = goretry.WithCappedDuration(p.Max, b)
	if j := p.Jitter; j > 0 && j < 1 {
		next := b
		b = goretry.BackoffFunc(func() (time.Duration, bool) {
			d, stop := next.Next()
			if stop {
				return d, stop
			}
			return d - time.Duration(rand.Float64()*j*float64(d)), false
		})
	}
	return b
}

// Failure describes one failed attempt of Do.
type Failure struct {
	// Attempt numbers the failed attempt, from 1.
	Attempt int
	// Err is what the attempt returned.
	Err error
	// Delay is how long Do waits before the next attempt.
	Delay time.Duration
}

// Option configures Do.
type Option func(*doOptions)

type doOptions struct {
	onFailure   func(Failure)
	wake        <-chan struct{}
	wakeJitter  time.Duration
	resetOnWake bool
}

// OnFailure makes Do call fn after every failed attempt, before it waits,
// so the caller can log "retrying in 2s" or update a status. fn runs on
// Do's goroutine and should not block.
func OnFailure(fn func(Failure)) Option {
	return func(o *doOptions) { o.onFailure = fn }
}

// WakeOn cuts Do's current wait short whenever a value arrives on (or the
// closing of) ch, so an attempt starts at once; for example when a
// connection becomes usable again. A closed channel wakes every wait, so
// pass a channel that fires once per event.
func WakeOn(ch <-chan struct{}) Option {
	return func(o *doOptions) { o.wake = ch }
}

// WakeJitter delays an attempt that WakeOn started early by a random
// duration in [0, d), so that the many processes one event wakes (a
// registry back after an outage) spread their attempts instead of all
// retrying in the same millisecond.
func WakeJitter(d time.Duration) Option {
	return func(o *doOptions) { o.wakeJitter = d }
}

// ResetOnWake restarts the backoff from the policy's Base when WakeOn cuts
// a wait short: what woke Do (a connection usable again) ends the outage
// the delays grew with, so a failure soon after it (a server still
// electing a leader) is retried after Base, not after the delay the
// outage reached.
func ResetOnWake() Option {
	return func(o *doOptions) { o.resetOnWake = true }
}

// Permanent marks err as not worth retrying: Do returns it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Do runs op until it returns nil, returns an error marked Permanent, or ctx
// ends. Between attempts it waits for the policy's next delay; a cancelled
// ctx stops the wait at once. It returns nil on success, the permanent error
// unwrapped, or ctx's error wrapping the last failure.
func (p Policy) Do(ctx context.Context, op func(context.Context) error, opts ...Option) error {
	var o doOptions
	for _, opt := range opts {
		opt(&o)
	}
	b := p.Backoff()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := op(ctx)
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		delay, _ := b.Next() // never stops: see Backoff
		if o.onFailure != nil {
			o.onFailure(Failure{Attempt: attempt, Err: err, Delay: delay})
		}
		woken, serr := sleep(ctx, delay, o.wake)
		if serr == nil && woken && o.wakeJitter > 0 {
			_, serr = sleep(ctx, rand.N(o.wakeJitter), nil)
		}
		if woken && o.resetOnWake {
			b = p.Backoff()
		}
		if serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}

// Forever runs session again and again until ctx ends, for a task that is
// never given up, such as following a watch: a session runs until it
// fails, and reports whether it made progress before failing (served a
// response, delivered a set). After each failure Forever calls onFailure,
// if not nil, then waits the policy's next delay; a session that made
// progress starts the backoff and the attempt count afresh.
func (p Policy) Forever(ctx context.Context, session func(context.Context) (progressed bool, err error),
	onFailure func(Failure)) {
	b := p.Backoff()
	failures := 0
	for ctx.Err() == nil {
		progressed, err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			b, failures = p.Backoff(), 0
		}
		failures++
		delay, _ := b.Next() // never stops: see Backoff
		if onFailure != nil {
			onFailure(Failure{Attempt: failures, Err: err, Delay: delay})
		}
		if Sleep(ctx, delay, nil) != nil {
			return
		}
	}
}

// Sleep waits for d, until ctx ends (returning ctx's error) or until wake
// fires (returning nil early). A nil wake never fires.
func Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	_, err := sleep(ctx, d, wake)
	return err
}

// sleep is Sleep that also reports whether wake cut it short.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) (woken bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false, nil
	case <-wake:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
