// Package clientopts holds what the client-side packages of roster
// (discovery/cache and discovery/grpcresolver) share in their options: the
// logger and the retry policy, their defaults, their validation, and the
// application of functional options.
package clientopts

import (
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/retry"
)

// Common are the options every client-side package has.
type Common struct {
	// Log receives the package's logs; never nil.
	Log hclog.Logger
	// Retry paces the attempts to follow a failed upstream again.
	Retry retry.Policy
}

// Defaults returns a null logger and retry.Default().
func Defaults() Common {
	return Common{Log: hclog.NewNullLogger(), Retry: retry.Default()}
}

// SetLogger sets Log to l named name; nil discards the logs.
func (c *Common) SetLogger(l hclog.Logger, name string) {
	if l == nil {
		c.Log = hclog.NewNullLogger()
		return
	}
	c.Log = l.Named(name)
}

// Validate reports an invalid retry policy as an error wrapping invalid
// (the package's ErrInvalidOption) and retry.ErrInvalidPolicy, naming the
// option WithRetry.
func (c Common) Validate(invalid error) error {
	if err := c.Retry.Validate(); err != nil {
		return fmt.Errorf("%w: WithRetry: %w", invalid, err)
	}
	return nil
}

// Build returns defaults with opts applied in order (a nil option changes
// nothing), or the error validate finds in the result.
func Build[T any, O ~func(*T)](defaults T, opts []O, validate func(T) error) (T, error) {
	for _, opt := range opts {
		if opt != nil {
			opt(&defaults)
		}
	}
	if err := validate(defaults); err != nil {
		var zero T
		return zero, err
	}
	return defaults, nil
}
