package memory

import (
	"errors"
	"fmt"
	"time"

	"github.com/roster-sd/roster/retry"
)

// DefaultRestoreDelay is how long a Backend waits, by default, before it
// puts back a registration dropped by Store.Expire: no time at all. The
// registration still passes through discovery.StateLost.
const DefaultRestoreDelay time.Duration = 0

// ErrInvalidOption reports an option given to New with an invalid value.
// New's error wraps it and names the option and the reason.
var ErrInvalidOption = errors.New("memory: invalid option")

// Option configures a Backend made by New.
type Option func(*options)

type options struct {
	restoreDelay time.Duration
	retry        retry.Policy
	drainOnClose time.Duration // see WithDrainOnClose, in drain.go
}

func defaultOptions() options {
	return options{restoreDelay: DefaultRestoreDelay, retry: retry.Default()}
}

// validate reports the first invalid option value, as an error wrapping
// ErrInvalidOption (and retry.ErrInvalidPolicy for a retry policy).
func (o options) validate() error {
	if o.restoreDelay < 0 {
		return fmt.Errorf("%w: WithRestoreDelay: restore delay is %v; want zero or more",
			ErrInvalidOption, o.restoreDelay)
	}
	if o.drainOnClose < 0 {
		return fmt.Errorf("%w: WithDrainOnClose: drain time is %v; want zero or more",
			ErrInvalidOption, o.drainOnClose)
	}
	if err := o.retry.Validate(); err != nil {
		return fmt.Errorf("%w: WithRetry: %w", ErrInvalidOption, err)
	}
	return nil
}

// WithRestoreDelay sets how long the Backend waits before it puts back a
// registration that Store.Expire dropped, as a real backend needs time to
// notice an expired lease and write again. The default is
// DefaultRestoreDelay. A negative d makes New fail with an error wrapping
// ErrInvalidOption.
func WithRestoreDelay(d time.Duration) Option {
	return func(o *options) { o.restoreDelay = d }
}

// WithRetry sets the retry policy the Backend follows during a simulated
// outage (Store.SetAvailable(false)): it gives the RetryIn of every
// discovery.StateRetrying status. The default is retry.Default(), 1 s
// doubling up to 30 s; tests usually pass a policy of a few milliseconds.
// The Backend never gives a registration up. A policy
// that fails retry.Policy.Validate makes New fail with an error wrapping
// both ErrInvalidOption and retry.ErrInvalidPolicy.
func WithRetry(p retry.Policy) Option {
	return func(o *options) { o.retry = p }
}
