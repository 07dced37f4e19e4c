package grpcresolver

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/retry"
)

// Defaults of the options.
const (
	// DefaultResolveNowInterval is the default shortest time between two
	// upstream Resolve calls forced by ResolveNow.
	DefaultResolveNowInterval = time.Second
	// DefaultTimeout is the default bound of one upstream call: the setup
	// of a Watch, or a Resolve forced by ResolveNow.
	DefaultTimeout = 10 * time.Second
	// LoggerName names the resolver's logger, under the logger given with
	// WithLogger.
	LoggerName = "roster.grpcresolver"
)

// Option configures the Builder made by NewBuilder.
type Option func(*options)

type options struct {
	log                hclog.Logger
	retry              retry.Policy
	resolveNowInterval time.Duration
	timeout            time.Duration
}

func defaultOptions() options {
	return options{
		log:                hclog.NewNullLogger(),
		retry:              retry.Default(),
		resolveNowInterval: DefaultResolveNowInterval,
		timeout:            DefaultTimeout,
	}
}

func (o options) validate() error {
	switch {
	case o.resolveNowInterval < 0:
		return fmt.Errorf("grpcresolver: ResolveNow interval is %v; want zero or more", o.resolveNowInterval)
	case o.timeout <= 0:
		return fmt.Errorf("grpcresolver: timeout is %v; want a positive duration", o.timeout)
	}
	if err := o.retry.Validate(); err != nil {
		return fmt.Errorf("grpcresolver: retry policy: %w", err)
	}
	return nil
}

// WithLogger sets the logger that receives the resolvers' logs, under the
// name LoggerName. nil, like the default, discards them.
func WithLogger(l hclog.Logger) Option {
	return func(o *options) {
		if l == nil {
			o.log = hclog.NewNullLogger()
			return
		}
		o.log = l.Named(LoggerName)
	}
}

// WithRetry sets the backoff between attempts to watch the service again
// after a failure. The default is retry.Default(), 1 s doubling up to
// 30 s, jittered. The policy's MaxAttempts and MaxElapsed are ignored: the
// resolver never gives up. A policy that fails retry.Policy.Validate makes
// NewBuilder panic.
func WithRetry(p retry.Policy) Option {
	return func(o *options) { o.retry = p }
}

// WithResolveNowInterval sets the shortest time between two upstream
// Resolve calls forced by gRPC's ResolveNow, which gRPC may call every time
// a connection fails. ResolveNow calls within the interval are merged into
// one forced Resolve at its end. The default is DefaultResolveNowInterval;
// zero resolves on every call. A negative d makes NewBuilder panic.
func WithResolveNowInterval(d time.Duration) Option {
	return func(o *options) { o.resolveNowInterval = d }
}

// WithTimeout bounds each upstream call: the setup of a Watch, and a
// Resolve forced by ResolveNow. The default is DefaultTimeout. A d that is
// not positive makes NewBuilder panic.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}
