package fxmodule

import (
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
	"github.com/roster-sd/roster/discovery"
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
// Config.Backend. The backend's own variables (backends.EnvEndpoints and
// the others) are read by that backend's ConfigFromEnv, called by its fx
// module (etcdfx, natsfx).
const EnvBackend = backends.EnvBackend

// EnvTimeout is the environment variable ConfigFromEnv reads into
// Config.Timeout, a Go duration; the etcd and NATS backends read it too,
// as their dial and request timeouts.
const EnvTimeout = backends.EnvTimeout

// EnvDrainDelay is the environment variable ConfigFromEnv reads into
// Config.DrainDelay, a Go duration such as "5s".
const EnvDrainDelay = "ROSTER_DRAIN_DELAY"

// EnvWeight is the environment variable ConfigFromEnv reads into
// Config.Weight, a whole number from 1 to discovery.MaxWeight.
const EnvWeight = "ROSTER_WEIGHT"

// EnvZone is the environment variable ConfigFromEnv reads into
// Config.Zone, a name such as "eu-west-1a".
const EnvZone = "ROSTER_ZONE"

// DefaultTimeout is the default of Config.Timeout: the bound of
// registration with RequireRegistration and of deregistration at stop,
// and the backend's dial and request timeout unless its Config sets them.
const DefaultTimeout = 5 * time.Second

// ErrInvalidConfig reports an invalid Config or ROSTER_BACKEND. The error
// names the field or variable and the reason. A backend's own settings are
// rejected by its module with that backend's error (etcd.ErrInvalidConfig,
// nats.ErrInvalidConfig) as well.
var ErrInvalidConfig = errors.New("fxmodule: invalid config")

// Config configures the module. Every field has a default used when it is
// left zero (see the package documentation for the table). An application
// supplies it with fx.Supply(fxmodule.Config{...}); when it supplies none,
// or a zero Config, the module reads it from the ROSTER_* environment
// variables with ConfigFromEnv. Module reads it once ([LoadConfig]) and
// provides the result under the name "roster.config" ([ConfigName]) to
// the registration and the backend modules.
//
// Config holds the module's own settings only. Each backend's settings
// are that backend's Config (etcd.Config, nats.Config), which its module
// (etcdfx, natsfx) takes from the graph or reads from the environment.
type Config struct {
	// Backend names the backend fxall.Module builds: BackendEtcd,
	// BackendNATS or BackendMemory; empty means BackendEtcd. A
	// single-backend module (etcdfx, natsfx, memoryfx) rejects another
	// backend's name, with an error wrapping ErrInvalidConfig, rather
	// than silently build its own (see CheckBackend). Ignored with
	// UseBackend.
	Backend string

	// Timeout bounds the registration of the application's instances with
	// RequireRegistration and their deregistration at stop, and is the
	// backend's dial and request timeout unless its Config sets them.
	// Default: DefaultTimeout. Environment: EnvTimeout.
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

	// Weight is the relative share of new traffic of the application's
	// instances (discovery.Instance.Weight), 1..discovery.MaxWeight, given
	// to every instance declared without one. Default: 0, the instances'
	// own (discovery.DefaultWeight when they set none).
	// Environment: EnvWeight.
	Weight int

	// Zone is the locality the application's instances run in
	// (discovery.Instance.Zone), such as "eu-west-1a": a name with the
	// alphabet and length of a service name, given to every instance
	// declared without one. Default: "", the instances' own.
	// Environment: EnvZone.
	Zone string

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

// ConfigFromEnv builds the module's Config from the ROSTER_* environment
// variables, read through lookup (pass os.LookupEnv): EnvBackend,
// EnvTimeout, EnvDrainDelay, EnvWeight, EnvZone and the EnvHealth*
// variables. The backend's
// own variables (endpoints, TTL, TLS files...) are read by the backend's
// module through that backend's ConfigFromEnv (etcd.ConfigFromEnv,
// nats.ConfigFromEnv). Unset and empty variables leave their field at its
// default. A malformed value gives an error wrapping ErrInvalidConfig that
// names the variable.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	b, _ := lookup(EnvBackend)
	switch c.Backend = strings.TrimSpace(b); c.Backend {
	case "", BackendEtcd, BackendMemory, BackendNATS:
	default:
		return Config{}, configError("%s is %q; want %s", EnvBackend, c.Backend, backendNames)
	}
	r := envconfig.NewReader(lookup)
	var err error
	if c.Timeout, err = r.Duration(EnvTimeout); err != nil {
		return Config{}, configError("%v", err)
	}
	if c.DrainDelay, err = r.Duration(EnvDrainDelay); err != nil {
		return Config{}, configError("%v", err)
	}
	if v := r.String(EnvWeight); v != "" {
		if c.Weight, err = strconv.Atoi(v); err != nil || c.Weight < 1 || c.Weight > discovery.MaxWeight {
			return Config{}, configError("%s is %q; want a whole number from 1 to %d", EnvWeight, v, discovery.MaxWeight)
		}
	}
	if c.Zone = r.String(EnvZone); c.Zone != "" {
		if err := discovery.ValidateName("Zone", c.Zone); err != nil {
			return Config{}, configError("%s is %q: %v", EnvZone, c.Zone, err)
		}
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

// CheckBackend is for a single-backend module: it returns an error
// wrapping ErrInvalidConfig when c.Backend names a backend other than
// name (the one the module builds), as when ROSTER_BACKEND=nats is set
// for an application built with etcdfx.Module; an empty Backend is
// accepted.
func (c Config) CheckBackend(name, module string) error {
	if c.Backend == "" || c.Backend == name {
		return nil
	}
	return configError("Backend (%s) is %q, but the application is built with %s, the %q backend's module; use fxall.Module to select the backend by name",
		EnvBackend, c.Backend, module, name)
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// ConfigName is the name under which Module provides the Config it
// loaded (LoadConfig): `name:"roster.config"`. The registration and the
// backend modules consume it, so that the environment is read once.
const ConfigName = "roster.config"

// LoadConfig returns the Config the module runs with: cfg, or, when cfg is
// zero (none supplied), ConfigFromEnv(os.LookupEnv); with its defaults
// filled in, and checked. An invalid Config gives an error wrapping
// ErrInvalidConfig that names the field or variable. Module calls it once
// and provides the result as the Config named ConfigName; outside fx, call
// it yourself and pass the result to the constructors.
func LoadConfig(cfg Config) (Config, error) {
	if cfg.isZero() {
		var err error
		if cfg, err = ConfigFromEnv(os.LookupEnv); err != nil {
			return Config{}, err
		}
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// withDefaults fills in the defaults that the module itself uses; the
// backends fill in theirs.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.Retry = c.Retry.OrDefault()
	return c
}

// validate checks what the module itself uses; the backends check the rest.
func (c Config) validate() error {
	switch {
	case c.Backend != "" && c.Backend != BackendEtcd && c.Backend != BackendNATS && c.Backend != BackendMemory:
		return configError("Backend is %q; want %s", c.Backend, backendNames)
	case c.Timeout <= 0:
		return configError("Timeout is %v; want a positive duration", c.Timeout)
	case c.DrainDelay < 0:
		return configError("DrainDelay is %v; want zero or more", c.DrainDelay)
	case c.Weight < 0 || c.Weight > discovery.MaxWeight:
		return configError("Weight is %d; want 1 to %d, or 0 for the instances' own", c.Weight, discovery.MaxWeight)
	}
	if c.Zone != "" {
		if err := discovery.ValidateName("Zone", c.Zone); err != nil {
			return configError("Zone is %q: %v", c.Zone, err)
		}
	}
	if err := c.Health.validate(); err != nil {
		return err
	}
	if err := c.Retry.Validate(); err != nil {
		return configError("Retry: %v", err)
	}
	return nil
}
