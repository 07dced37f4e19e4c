package fxmodule

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/retry"
)

// Backend kinds accepted by Config.Backend and ROSTER_BACKEND (EnvBackend).
const (
	// BackendEtcd selects the etcd backend (package backends/etcd).
	BackendEtcd = backends.Etcd
	// BackendNATS selects the NATS JetStream key-value backend (package
	// backends/nats).
	BackendNATS = backends.NATS
	// BackendMemory selects an in-process memory backend (package
	// backends/memory) with a Store of its own: instances are visible
	// inside the process only. For tests and single-process applications.
	BackendMemory = backends.Memory
)

// EnvBackend is the environment variable ConfigFromEnv reads into
// Config.Backend. The selected backend's variables (backends.EnvEndpoints
// and the others) are read by its ConfigFromEnv.
const EnvBackend = backends.EnvBackend

// EnvDrainDelay is the environment variable ConfigFromEnv reads into
// Config.DrainDelay, a Go duration such as "5s".
const EnvDrainDelay = "ROSTER_DRAIN_DELAY"

// DefaultTimeout is the default of Config.Timeout: the bound of
// registration with RequireRegistration and of deregistration at stop,
// and the backend's dial and request timeout unless its Config sets them.
const DefaultTimeout = 5 * time.Second

// ErrInvalidConfig reports an invalid Config or ROSTER_BACKEND. The error
// names the field or variable and the reason. A backend's own settings are
// rejected with that backend's error (etcd.ErrInvalidConfig,
// nats.ErrInvalidConfig).
var ErrInvalidConfig = errors.New("fxmodule: invalid config")

// Config configures the module. Every field has a default used when it is
// left zero (see the package documentation for the table). An application
// supplies it with fx.Supply(fxmodule.Config{...}); when it supplies none,
// or a zero Config, the module reads it from the ROSTER_* environment
// variables with ConfigFromEnv.
//
// The module's own settings are fields of Config; each backend's settings
// are that backend's Config, in a field named after it (Etcd), used when
// Backend selects it.
type Config struct {
	// Backend is BackendEtcd, BackendNATS or BackendMemory. Default:
	// BackendEtcd.
	// Ignored when the application provides its own backend (UseBackend).
	Backend string

	// Etcd configures the etcd backend (endpoints, prefix, TTL, TLS from
	// PEM files, credentials...; see etcd.Config), with etcd's defaults.
	// Its DialTimeout and RequestTimeout default to Timeout, its Retry to
	// Retry, and its Logger to the application's hclog.Logger. Ignored
	// with another Backend.
	Etcd etcd.Config

	// NATS configures the NATS backend (endpoints, bucket, TTL, TLS,
	// credentials...; see nats.Config), with NATS's defaults. Its
	// DialTimeout and RequestTimeout default to Timeout, its Retry to
	// Retry, and its Logger to the application's hclog.Logger. Ignored
	// with another Backend.
	NATS nats.Config

	// Timeout bounds the registration of the application's instances with
	// RequireRegistration and their deregistration at stop. Default:
	// DefaultTimeout.
	Timeout time.Duration

	// Retry is the retry policy of the module's own registration attempts
	// and of the memory backend, and the etcd or NATS backend's unless its
	// Config sets one. Default (zero value): retry.Default(), 1 s doubling to 30 s,
	// jittered.
	Retry retry.Policy

	// RequireRegistration makes the application's start wait until every
	// instance is registered, and fail (with an error naming the
	// instance) if that does not happen within Timeout (and fx's start
	// timeout). By default start does not wait: instances are registered
	// in the background, as soon as the registry can be reached.
	RequireRegistration bool

	// DrainDelay is how long the instances stay published in
	// discovery.ConditionDraining when the application stops: stopping
	// publishes them draining (an update in place), waits DrainDelay so
	// that clients stop sending them new work and finish what they sent,
	// then deregisters them, and only then lets the rest of the
	// application (its servers) stop. A removal that follows a draining
	// condition is a deliberate one, which clients can tell from a crash.
	// Default: 0, deregister at once without publishing draining.
	// Environment: EnvDrainDelay.
	DrainDelay time.Duration

	// Health gates the registration of the application's instances on a
	// health check (see HealthConfig). Default: no check, instances are
	// published serving.
	Health HealthConfig
}

// Environment variables ConfigFromEnv reads into Config.Health.
const (
	EnvHealthHTTP             = "ROSTER_HEALTH_HTTP"
	EnvHealthGRPC             = "ROSTER_HEALTH_GRPC"
	EnvHealthGRPCService      = "ROSTER_HEALTH_GRPC_SERVICE"
	EnvHealthTCP              = "ROSTER_HEALTH_TCP"
	EnvHealthInitialDelay     = "ROSTER_HEALTH_INITIAL_DELAY"
	EnvHealthPeriod           = "ROSTER_HEALTH_PERIOD"
	EnvHealthTimeout          = "ROSTER_HEALTH_TIMEOUT"
	EnvHealthSuccessThreshold = "ROSTER_HEALTH_SUCCESS_THRESHOLD"
	EnvHealthFailureThreshold = "ROSTER_HEALTH_FAILURE_THRESHOLD"
)

// HealthConfig gates the registration of the application's instances on
// one health check (package health): they are published
// discovery.ConditionNotReady (visible, not routed) until it passes, then
// serving, and not ready again, with the check's output as reason, after
// Probe.FailureThreshold failures in a row. At most one of HTTP, GRPC and
// TCP may be set; an application may instead provide a health.Check in
// the fx graph (which then wins), with Probe's parameters.
type HealthConfig struct {
	// HTTP is a URL whose GET must answer 2xx ("http://127.0.0.1:8080/healthz").
	// Environment: ROSTER_HEALTH_HTTP.
	HTTP string
	// GRPC is the host:port of a gRPC server with the standard health
	// service, asked about GRPCService ("" for the whole server).
	// Environment: ROSTER_HEALTH_GRPC, ROSTER_HEALTH_GRPC_SERVICE.
	GRPC, GRPCService string
	// TCP is a host:port that must accept a connection.
	// Environment: ROSTER_HEALTH_TCP.
	TCP string
	// Probe holds the probe parameters, with health's defaults (period
	// 10 s, timeout 1 s, thresholds 1 and 3). Environment:
	// ROSTER_HEALTH_INITIAL_DELAY, ROSTER_HEALTH_PERIOD,
	// ROSTER_HEALTH_TIMEOUT, ROSTER_HEALTH_SUCCESS_THRESHOLD,
	// ROSTER_HEALTH_FAILURE_THRESHOLD.
	Probe health.Config
}

// check returns the check the config names, with a func that releases it,
// or nil when it names none.
func (h HealthConfig) check() (health.Check, func(), error) {
	switch {
	case h.HTTP != "":
		return health.HTTP(h.HTTP), func() {}, nil
	case h.GRPC != "":
		c, err := health.DialGRPC(h.GRPC, h.GRPCService)
		if err != nil {
			return nil, nil, configError("Health.GRPC: %v", err)
		}
		return c, func() { _ = c.Close() }, nil
	case h.TCP != "":
		return health.TCP(h.TCP), func() {}, nil
	}
	return nil, func() {}, nil
}

// validate checks the config without making the check.
func (h HealthConfig) validate() error {
	n := 0
	for _, v := range []string{h.HTTP, h.GRPC, h.TCP} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return configError("Health: set at most one of HTTP, GRPC and TCP")
	}
	if h.HTTP != "" {
		u, err := url.Parse(h.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return configError("Health.HTTP is %q; want an http:// or https:// URL", h.HTTP)
		}
	}
	for name, v := range map[string]string{"Health.GRPC": h.GRPC, "Health.TCP": h.TCP} {
		if v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return configError("%s is %q; want host:port", name, v)
		}
	}
	if err := h.Probe.Validate(); err != nil {
		return configError("Health.Probe: %v", err)
	}
	return nil
}

// isZero reports whether c is the zero Config, which means "not supplied".
func (c Config) isZero() bool { return reflect.ValueOf(c).IsZero() }

// ConfigFromEnv builds a Config from the ROSTER_* environment variables,
// read through lookup (pass os.LookupEnv): EnvBackend here, and the
// selected backend's variables through its ConfigFromEnv
// (etcd.ConfigFromEnv into Config.Etcd, nats.ConfigFromEnv into
// Config.NATS). ROSTER_TIMEOUT also sets Timeout. Unset and empty
// variables leave their field at its default. A malformed value gives an
// error wrapping ErrInvalidConfig (and, for a backend's variables, that
// backend's ErrInvalidConfig too) that names the variable.
//
// It reads only the variables; certificate files are read when the
// backend is built.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	b, _ := lookup(EnvBackend)
	var err error
	switch c.Backend = strings.TrimSpace(b); c.Backend {
	case "", BackendEtcd, BackendMemory:
		if c.Etcd, err = etcd.ConfigFromEnv(lookup); err != nil {
			return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		c.Timeout = c.Etcd.RequestTimeout
	case BackendNATS:
		if c.NATS, err = nats.ConfigFromEnv(lookup); err != nil {
			return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		c.Timeout = c.NATS.RequestTimeout
	default:
		return Config{}, configError("%s is %q; want %s", EnvBackend, c.Backend, backendNames)
	}
	r := envconfig.NewReader(lookup)
	if c.DrainDelay, err = r.Duration(EnvDrainDelay); err != nil {
		return Config{}, configError("%v", err)
	}
	h := &c.Health
	h.HTTP, h.GRPC, h.GRPCService, h.TCP = r.String(EnvHealthHTTP), r.String(EnvHealthGRPC), r.String(EnvHealthGRPCService), r.String(EnvHealthTCP)
	for name, d := range map[string]*time.Duration{EnvHealthInitialDelay: &h.Probe.InitialDelay, EnvHealthPeriod: &h.Probe.Period, EnvHealthTimeout: &h.Probe.Timeout} {
		if *d, err = r.Duration(name); err != nil {
			return Config{}, configError("%v", err)
		}
	}
	for name, n := range map[string]*int{EnvHealthSuccessThreshold: &h.Probe.SuccessThreshold, EnvHealthFailureThreshold: &h.Probe.FailureThreshold} {
		v := r.String(name)
		if v == "" {
			continue
		}
		if *n, err = strconv.Atoi(v); err != nil || *n < 1 {
			return Config{}, configError("%s is %q; want a whole number, 1 or more", name, v)
		}
	}
	return c, nil
}

// backendNames lists the accepted Backend values, for errors.
const backendNames = `"` + BackendEtcd + `", "` + BackendNATS + `" or "` + BackendMemory + `"`

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// resolveConfig returns cfg, or the environment's Config when cfg is zero.
func resolveConfig(cfg Config) (Config, error) {
	if cfg.isZero() {
		return ConfigFromEnv(os.LookupEnv)
	}
	return cfg, nil
}

// withDefaults fills in the defaults that the module itself uses; the
// backends fill in theirs.
func (c Config) withDefaults() Config {
	if c.Backend == "" {
		c.Backend = BackendEtcd
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.Retry = c.Retry.OrDefault()
	return c
}

// validate checks what the module itself uses; the backends check the rest.
func (c Config) validate() error {
	switch {
	case c.Backend != BackendEtcd && c.Backend != BackendNATS && c.Backend != BackendMemory:
		return configError("Backend is %q; want %s", c.Backend, backendNames)
	case c.Timeout < 0:
		return configError("Timeout is %v; want a positive duration", c.Timeout)
	case c.DrainDelay < 0:
		return configError("DrainDelay is %v; want zero or more", c.DrainDelay)
	}
	if err := c.Health.validate(); err != nil {
		return err
	}
	if err := c.Retry.Validate(); err != nil {
		return configError("Retry: %v", err)
	}
	return nil
}

// etcdConfig returns the etcd backend's Config, with the module's Timeout
// and Retry where it leaves them zero.
func (c Config) etcdConfig() etcd.Config {
	e := c.Etcd
	if e.DialTimeout == 0 {
		e.DialTimeout = c.Timeout
	}
	if e.RequestTimeout == 0 {
		e.RequestTimeout = c.Timeout
	}
	if e.Retry == (retry.Policy{}) {
		e.Retry = c.Retry
	}
	return e
}

// natsConfig returns the NATS backend's Config, with the module's Timeout
// and Retry where it leaves them zero.
func (c Config) natsConfig() nats.Config {
	n := c.NATS
	n.DialTimeout = cmp.Or(n.DialTimeout, c.Timeout)
	n.RequestTimeout = cmp.Or(n.RequestTimeout, c.Timeout)
	if n.Retry == (retry.Policy{}) {
		n.Retry = c.Retry
	}
	return n
}
