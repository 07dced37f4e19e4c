package cache

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/clientopts"
	"github.com/roster-sd/roster/retry"
)

// LoggerName names the Resolver's logger, under the logger given with
// WithLogger.
const LoggerName = "roster.cache"

// ErrInvalidOption reports an invalid argument to New: a nil upstream or an
// option with an invalid value. New's error wraps it and names the argument
// or option and the reason.
var ErrInvalidOption = errors.New("cache: invalid option")

// Option configures a Resolver made by New.
type Option func(*options)

type options struct {
	clientopts.Common
	staleOnError bool
	maxAge       time.Duration // with staleOnError; 0 means forever
	emptyHold    time.Duration // 0 means no hold
	route        discovery.RoutePolicy
}

func defaultOptions() options {
	return options{Common: clientopts.Defaults()}
}

// validate reports the first invalid option value, as an error wrapping
// ErrInvalidOption (and retry.ErrInvalidPolicy for a retry policy).
func (o options) validate() error {
	switch {
	case o.maxAge < 0:
		return fmt.Errorf("%w: WithStaleOnError: max age is %v; want zero (forever) or more",
			ErrInvalidOption, o.maxAge)
	case o.emptyHold < 0:
		return fmt.Errorf("%w: WithEmptyHold: hold is %v; want zero (no hold) or more",
			ErrInvalidOption, o.emptyHold)
	}
	return o.Common.Validate(ErrInvalidOption)
}

// WithStaleOnError keeps Resolve serving the last known set of a service
// while its upstream watch is failing, for up to maxAge after the set was
// last confirmed by the upstream; zero means forever. Snapshot reports such
// a set as stale, with its age. Without this option, or once maxAge has
// passed, Resolve returns an error wrapping the upstream's error instead.
// A negative maxAge makes New fail with an error wrapping ErrInvalidOption.
func WithStaleOnError(maxAge time.Duration) Option {
	return func(o *options) {
		o.staleOnError = true
		o.maxAge = maxAge
	}
}

// WithEmptyHold treats an empty set as suspicious: when the upstream
// reports that a non-empty set became empty, the cache keeps serving and
// publishing the non-empty set until the upstream has reported it empty
// for d without interruption, so that watchers are not told that every
// instance left because of a blip. A non-empty set reported within d
// cancels the hold, and the empty set is never published. Zero (the
// default) publishes empty sets at once. A negative d makes New fail with
// an error wrapping ErrInvalidOption.
func WithEmptyHold(d time.Duration) Option {
	return func(o *options) { o.emptyHold = d }
}

// WithRetry sets the backoff between attempts to restore a failed upstream
// watch. The default is retry.Default(), 1 s doubling up to 30 s, jittered.
// The cache never gives up on a service. A policy that fails retry.Policy.Validate makes
// New fail with an error wrapping both ErrInvalidOption and
// retry.ErrInvalidPolicy.
func WithRetry(p retry.Policy) Option {
	return func(o *options) { o.Retry = p }
}

// WithLogger sets the logger that receives the Resolver's logs, under the
// name LoggerName. nil, like the default, discards them.
func WithLogger(l hclog.Logger) Option {
	return func(o *options) { o.SetLogger(l, LoggerName) }
}

// WithRoutePolicy sets the policy of Routable. The default, the zero
// discovery.RoutePolicy, picks the serving instances, or the not-ready
// ones when none is serving (as the gRPC resolver does).
func WithRoutePolicy(p discovery.RoutePolicy) Option {
	return func(o *options) { o.route = p }
}
