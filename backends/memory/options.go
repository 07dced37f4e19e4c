package memory

import (
	"fmt"
	"time"

	"github.com/roster-sd/roster/retry"
)

// DefaultRestoreDelay is how long a Backend waits, by default, before it
// puts back a registration dropped by Store.Expire: no time at all. The
// registration still passes through discovery.StateLost.
const DefaultRestoreDelay time.Duration = 0

// Option configures a Backend made by New.
type Option func(*options)

type options struct {
	restoreDelay time.Duration
	retry        retry.Policy
}

func defaultOptions() options {
	return options{restoreDelay: DefaultRestoreDelay, retry: retry.Default()}
}

func (o options) validate() error {
	if o.restoreDelay < 0 {
		return fmt.Errorf("memory: restore delay is %v; want zero or more", o.restoreDelay)
	}
	if err := o.retry.Validate(); err != nil {
		return fmt.Errorf("memory: retry policy: %w", err)
	}
	return nil
}

// WithRestoreDelay sets how long the Backend waits before it puts back a
// registration that Store.Expire dropped, as a real backend needs time to
// notice an expired lease and write again. The default is
// DefaultRestoreDelay. A negative d makes New panic.
func WithRestoreDelay(d time.Duration) Option {
	return func(o *options) { o.restoreDelay = d }
}

// WithRetry sets the retry policy the Backend follows during a simulated
// outage (Store.SetAvailable(false)): it gives the RetryIn of every
// discovery.StateRetrying status. The default is retry.Default(), 1 s
// doubling up to 30 s; tests usually pass a policy of a few milliseconds.
// When the policy's MaxAttempts or MaxElapsed is reached the Backend keeps
// retrying at its last delay: it never gives a registration up. A policy
// that fails retry.Policy.Validate makes New panic.
func WithRetry(p retry.Policy) Option {
	return func(o *options) { o.retry = p }
}
