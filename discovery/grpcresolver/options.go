package grpcresolver

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/clientopts"
	"github.com/roster-sd/roster/retry"
)

// Defaults of the options.
const (
	// DefaultResolveNowInterval is the default shortest time between two
	// upstream Resolve calls forced by ResolveNow.
	DefaultResolveNowInterval = time.Second
	// DefaultTimeout is the default bound of an upstream Resolve forced by
	// ResolveNow.
	DefaultTimeout = 10 * time.Second
	// LoggerName names the resolver's logger, under the logger given with
	// WithLogger.
	LoggerName = "roster.grpcresolver"
)

// ErrInvalidOption reports an invalid argument to NewBuilder: a nil
// resolver or an option with an invalid value. NewBuilder's error wraps it
// and names the argument or option and the reason.
var ErrInvalidOption = errors.New("grpcresolver: invalid option")

// Option configures the Builder made by NewBuilder.
type Option func(*options)

type options struct {
	clientopts.Common
	resolveNowInterval time.Duration
	timeout            time.Duration
	route              discovery.RoutePolicy
}

func defaultOptions() options {
	return options{
		Common:             clientopts.Defaults(),
		resolveNowInterval: DefaultResolveNowInterval,
		timeout:            DefaultTimeout,
	}
}

// validate reports the first invalid option value, as an error wrapping
// ErrInvalidOption (and retry.ErrInvalidPolicy for a retry policy).
func (o options) validate() error {
	switch {
	case o.resolveNowInterval < 0:
		return fmt.Errorf("%w: WithResolveNowInterval: interval is %v; want zero or more",
			ErrInvalidOption, o.resolveNowInterval)
	case o.timeout <= 0:
		return fmt.Errorf("%w: WithTimeout: timeout is %v; want a positive duration",
			ErrInvalidOption, o.timeout)
	}
	return o.Common.Validate(ErrInvalidOption)
}

// WithLogger sets the logger that receives the resolvers' logs, under the
// name LoggerName. nil, like the default, discards them.
func WithLogger(l hclog.Logger) Option {
	return func(o *options) { o.SetLogger(l, LoggerName) }
}

// WithRetry sets the backoff between attempts to watch the service again
// after a failure. The default is retry.Default(), 1 s doubling up to
// 30 s, jittered. The resolver never gives up. A policy that fails retry.Policy.Validate makes
// NewBuilder fail with an error wrapping both ErrInvalidOption and
// retry.ErrInvalidPolicy.
func WithRetry(p retry.Policy) Option {
	return func(o *options) { o.Retry = p }
}

// WithResolveNowInterval sets the shortest time between two upstream
// Resolve calls forced by gRPC's ResolveNow, which gRPC may call every time
// a connection fails; ResolveNow reads upstream only while the watch is
// failing or being set up. ResolveNow calls within the interval are merged
// into one forced Resolve at its end. The default is DefaultResolveNowInterval;
// zero resolves on every call. A negative d makes NewBuilder fail with an
// error wrapping ErrInvalidOption.
func WithResolveNowInterval(d time.Duration) Option {
	return func(o *options) { o.resolveNowInterval = d }
}

// WithTimeout bounds each upstream Resolve that gRPC's ResolveNow forces
// (see WithResolveNowInterval), and nothing else: the upstream Watch lives
// as long as the gRPC resolver. The default is DefaultTimeout. A d that is
// not positive makes NewBuilder fail with an error wrapping
// ErrInvalidOption.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithRoutePolicy sets which instances of the service gRPC gets. The
// default, the zero discovery.RoutePolicy, gives it the serving instances
// and, when none is serving but some are not ready, those (with a warning
// in the log) rather than an empty list: a health check failing on every
// instance at once must not become a total outage. Draining instances and
// instances in maintenance are never given. RoutePolicy{NoFallback: true}
// gives the serving ones only.
func WithRoutePolicy(p discovery.RoutePolicy) Option {
	return func(o *options) { o.route = p }
}
