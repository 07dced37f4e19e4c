package fxmodule

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/retry"
)

// Backend kinds accepted by Config.Backend and ROSTER_BACKEND.
const (
	// BackendEtcd selects the etcd backend (package backends/etcd).
	BackendEtcd = "etcd"
	// BackendMemory selects an in-process memory backend (package
	// backends/memory) with a Store of its own: instances are visible
	// inside the process only. For tests and single-process applications.
	BackendMemory = "memory"
)

// Names of the environment variables read by ConfigFromEnv. The roster
// command line reads the same ones.
const (
	EnvBackend   = "ROSTER_BACKEND"
	EnvEndpoints = "ROSTER_ENDPOINTS"
	EnvPrefix    = "ROSTER_PREFIX"
	EnvTTL       = "ROSTER_TTL"
	EnvCACert    = "ROSTER_CACERT"
	EnvCert      = "ROSTER_CERT"
	EnvKey       = "ROSTER_KEY"
	EnvUsername  = "ROSTER_USERNAME"
	EnvPassword  = "ROSTER_PASSWORD"
	EnvTimeout   = "ROSTER_TIMEOUT"
)

// DefaultTimeout is the default of Config.Timeout: the etcd dial and
// request timeout, and the bound of deregistration at stop.
const DefaultTimeout = 5 * time.Second

// ErrInvalidConfig reports an invalid Config or environment variable. The
// error names the field or variable and the reason.
var ErrInvalidConfig = errors.New("fxmodule: invalid config")

// Config configures the module. Every field has a default used when it is
// left zero (see the package documentation for the table). An application
// supplies it with fx.Supply(fxmodule.Config{...}); when it supplies none,
// or a zero Config, the module reads it from the ROSTER_* environment
// variables with ConfigFromEnv.
type Config struct {
	// Backend is BackendEtcd or BackendMemory. Default: BackendEtcd.
	// Ignored when the application provides its own backend (UseBackend).
	Backend string

	// Endpoints are the etcd endpoints, "host:port" or URLs. Default:
	// etcd.DefaultEndpoint (127.0.0.1:2379). Ignored with an
	// application-owned *clientv3.Client. https:// and unixs:// endpoints
	// use TLS (the system's roots unless CACert is set), host:port ones
	// when CACert, Cert or TLS is set. An http:// or unix:// endpoint with
	// any of those, or endpoints that mix TLS and plain-text schemes, are
	// rejected with an error naming the endpoint (etcd.ErrInvalidConfig):
	// the etcd client would connect in plain text.
	Endpoints []string
	// Prefix is the etcd key prefix. Default: etcd.DefaultPrefix
	// (/roster/services).
	Prefix string
	// TTL is the etcd lease TTL, in whole seconds. Default: etcd.DefaultTTL
	// (15s).
	TTL time.Duration

	// CACert is a PEM file of the certificate authorities that sign
	// etcd's server certificate. Default: the system's roots.
	CACert string
	// Cert and Key are PEM files of the client certificate and its key,
	// for etcd's client certificate authentication. Both or neither.
	Cert string
	// Key goes with Cert.
	Key string
	// TLS, when set, is used as it is instead of a configuration built
	// from CACert, Cert and Key.
	TLS *tls.Config

	// Username and Password authenticate to etcd when its auth is enabled.
	Username string
	// Password goes with Username. It is never logged. Without TLS it is
	// sent in clear, which the module allows with a warning in its log.
	Password string

	// Timeout is the etcd dial and request timeout, and bounds the
	// deregistration of the application's instances at stop. Default:
	// DefaultTimeout.
	Timeout time.Duration

	// Retry is the retry policy of the backend and of the module's own
	// registration attempts. Default (zero value): retry.Default(), 1 s
	// doubling to 30 s, jittered.
	Retry retry.Policy

	// RequireRegistration makes the application's start wait until every
	// instance is registered, and fail (with an error naming the
	// instance) if that does not happen within Timeout (and fx's start
	// timeout). By default start does not wait: instances are registered
	// in the background, as soon as the registry can be reached.
	RequireRegistration bool

	// DrainDelay is how long stopping waits after the instances have been
	// deregistered, before the rest of the application (its servers)
	// stops, so that clients have time to see them leave. Default: 0.
	DrainDelay time.Duration
}

// isZero reports whether c is the zero Config, which means "not supplied".
func (c Config) isZero() bool { return reflect.ValueOf(c).IsZero() }

// ConfigFromEnv builds a Config from the ROSTER_* environment variables,
// read through lookup (pass os.LookupEnv). Unset and empty variables leave
// their field at its default. A malformed value gives an error wrapping
// ErrInvalidConfig that names the variable.
//
// It reads only the variables; certificate files are read when the
// backend is built.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var c Config
	switch b := get(EnvBackend); b {
	case "", BackendEtcd, BackendMemory:
		c.Backend = b
	default:
		return Config{}, envError(EnvBackend, "is %q; want %q or %q", b, BackendEtcd, BackendMemory)
	}
	if eps := get(EnvEndpoints); eps != "" {
		for i, ep := range strings.Split(eps, ",") {
			ep = strings.TrimSpace(ep)
			if ep == "" {
				return Config{}, envError(EnvEndpoints, "%q has an empty endpoint at position %d; want comma-separated host:port or URLs", eps, i+1)
			}
			c.Endpoints = append(c.Endpoints, ep)
		}
	}
	c.Prefix = get(EnvPrefix)
	if c.Prefix != "" && !strings.HasPrefix(c.Prefix, "/") {
		return Config{}, envError(EnvPrefix, "is %q; want an absolute key prefix such as %q", c.Prefix, etcd.DefaultPrefix)
	}
	var err error
	if c.TTL, err = envDuration(get, EnvTTL); err != nil {
		return Config{}, err
	}
	if c.TTL != 0 && (c.TTL < time.Second || c.TTL%time.Second != 0) {
		return Config{}, envError(EnvTTL, "is %v; want a whole number of seconds, at least 1s (etcd counts lease TTLs in seconds)", c.TTL)
	}
	if c.Timeout, err = envDuration(get, EnvTimeout); err != nil {
		return Config{}, err
	}
	c.CACert, c.Cert, c.Key = get(EnvCACert), get(EnvCert), get(EnvKey)
	switch {
	case c.Cert != "" && c.Key == "":
		return Config{}, envError(EnvKey, "is empty but %s is set; set both or neither", EnvCert)
	case c.Cert == "" && c.Key != "":
		return Config{}, envError(EnvCert, "is empty but %s is set; set both or neither", EnvKey)
	}
	c.Username = get(EnvUsername)
	if p, _ := lookup(EnvPassword); p != "" { // a password may have spaces
		c.Password = p
	}
	if c.Password != "" && c.Username == "" {
		return Config{}, envError(EnvUsername, "is empty but %s is set", EnvPassword)
	}
	return c, nil
}

func envDuration(get func(string) string, name string) (time.Duration, error) {
	v := get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, envError(name, "is %q; want a Go duration such as 15s or 1m", v)
	}
	if d <= 0 {
		return 0, envError(name, "is %v; want a positive duration", d)
	}
	return d, nil
}

func envError(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidConfig, name, fmt.Sprintf(format, args...))
}

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
	if c.Retry == (retry.Policy{}) {
		c.Retry = retry.Default()
	}
	return c
}

// validate checks what the module itself uses; the backends check the rest.
func (c Config) validate() error {
	switch {
	case c.Backend != BackendEtcd && c.Backend != BackendMemory:
		return configError("Backend is %q; want %q or %q", c.Backend, BackendEtcd, BackendMemory)
	case c.Timeout < 0:
		return configError("Timeout is %v; want a positive duration", c.Timeout)
	case c.DrainDelay < 0:
		return configError("DrainDelay is %v; want zero or more", c.DrainDelay)
	case (c.Cert == "") != (c.Key == ""):
		return configError("Cert and Key go together: set both or neither")
	}
	if err := c.Retry.Validate(); err != nil {
		return configError("Retry: %v", err)
	}
	return nil
}

// tlsConfig returns c.TLS, or one built from the certificate files, or nil
// when nothing asks for TLS. An https:// or unixs:// endpoint without files
// gets the system's roots. The etcd backend rejects a TLS configuration
// with an http:// or unix:// endpoint, which would connect in plain text.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS != nil {
		return c.TLS, nil
	}
	https := false
	for _, ep := range c.Endpoints {
		ep = strings.ToLower(strings.TrimSpace(ep))
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs:") {
			https = true
		}
	}
	if c.CACert == "" && c.Cert == "" && !https {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, configError("CACert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, configError("CACert: %s holds no PEM certificate", c.CACert)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, configError("Cert and Key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// etcdConfig translates c into the etcd backend's Config.
func (c Config) etcdConfig() (etcd.Config, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return etcd.Config{}, err
	}
	return etcd.Config{
		Endpoints:      c.Endpoints,
		DialTimeout:    c.Timeout,
		RequestTimeout: c.Timeout,
		TLS:            tlsCfg,
		Username:       c.Username,
		Password:       c.Password,
		Prefix:         c.Prefix,
		TTL:            c.TTL,
		Retry:          c.Retry,
	}, nil
}
