package etcd

import (
	"crypto/tls"
	"errors"
	"strings"
	"time"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/internal/configcheck"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/internal/tlsfiles"
)

// passwordInClearMessage is the warning a Backend built by New logs, once,
// when Password is set and the connection does not use TLS. The password
// itself is never logged.
const passwordInClearMessage = "the etcd password is sent in clear: the endpoints do not use TLS"

// PasswordInClear reports whether c sends a password to etcd without TLS:
// a Password with neither TLS nor CACertFile nor CertFile given, and no
// https:// or unixs:// endpoint (which turn TLS on). New allows it (a
// development etcd) and logs a warning once; a program that
// wants to tell its user asks this rather than watching the log.
func (c Config) PasswordInClear() bool {
	if c.Password == "" || c.TLS != nil || c.CACertFile != "" || c.CertFile != "" {
		return false
	}
	for _, ep := range c.Endpoints {
		if strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs://") {
			return false
		}
	}
	return true
}

// FieldError is the error New gives for a Config field whose value it
// cannot use, such as a certificate file that cannot be read: it names the
// field, so that a caller that took the value from elsewhere (a flag, a
// variable) can say where. It wraps ErrInvalidConfig.
type FieldError struct {
	// Field is the Config field, such as "CACertFile".
	Field string
	// Reason says what is wrong with its value.
	Reason string
}

// Error returns "etcd: invalid config: <Field>: <Reason>".
func (e *FieldError) Error() string {
	return ErrInvalidConfig.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap returns ErrInvalidConfig.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// ConfigFromEnv builds a Config from the ROSTER_* environment variables
// (backends.EnvEndpoints, EnvPrefix, EnvTTL, EnvTimeout, EnvCACert,
// EnvCert, EnvKey, EnvUsername, EnvPassword; EnvTimeout sets both
// DialTimeout and RequestTimeout), read through lookup (pass
// os.LookupEnv).
// Unset and empty variables leave their field zero, that is at its
// default. A malformed value gives an error wrapping ErrInvalidConfig that
// names the variable; the password's value never appears in an error.
//
// It reads only the variables; the certificate files are read when New
// builds the Backend.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	common, err := envconfig.ReadCommon(lookup, "comma-separated host:port or URLs", configcheck.EtcdEndpoint, configcheck.EtcdTTL)
	if err != nil {
		return Config{}, configError("%v", err)
	}
	c := Config{
		Endpoints:      common.Endpoints,
		TTL:            common.TTL,
		DialTimeout:    common.Timeout,
		RequestTimeout: common.Timeout,
		CACertFile:     common.CACertFile,
		CertFile:       common.CertFile,
		KeyFile:        common.KeyFile,
		Username:       common.Username,
		Password:       common.Password,
	}
	if c.Prefix = envconfig.NewReader(lookup).String(backends.EnvPrefix); c.Prefix != "" {
		if reason := prefixProblem(c.Prefix); reason != "" {
			return Config{}, configError("%s %q %s", backends.EnvPrefix, c.Prefix, reason)
		}
	}
	return c, nil
}

// ttlProblem says what is wrong with a non-zero TTL, or "".
func ttlProblem(d time.Duration) string {
	if err := configcheck.EtcdTTL(d); err != nil {
		return err.Error()
	}
	return ""
}

// prefixProblem says what is wrong with a prefix, or "" (see
// configcheck.EtcdPrefix).
func prefixProblem(p string) string {
	if err := configcheck.EtcdPrefix(p); err != nil {
		return err.Error()
	}
	return ""
}

// validatePrefix checks Config.Prefix.
func validatePrefix(p string) error {
	if reason := prefixProblem(p); reason != "" {
		return configError("Prefix %q %s", p, reason)
	}
	return nil
}

// wantsTLS reports whether the Config asks for TLS: TLS or a certificate
// file is set, or an endpoint is https:// or unixs://.
func (c Config) wantsTLS() bool {
	if c.TLS != nil || c.CACertFile != "" || c.CertFile != "" || c.KeyFile != "" {
		return true
	}
	for _, ep := range c.Endpoints {
		if s := endpointScheme(ep); s == "https" || s == "unixs" {
			return true
		}
	}
	return false
}

// validateFiles checks the certificate file fields against each other and
// against TLS, before any file is read.
func (c Config) validateFiles() error {
	if err := tlsfiles.CheckPairs(c.TLS != nil, c.CACertFile, c.CertFile, c.KeyFile); err != nil {
		return configError("%v", err)
	}
	return nil
}

// loadTLS returns c with TLS built from the certificate files, or with a
// TLS configuration on the system's roots when an endpoint is https:// or
// unixs:// and nothing else is given. c.TLS, when set, is kept as it is.
// Errors name the field.
func (c Config) loadTLS() (Config, error) {
	if c.TLS != nil || !c.wantsTLS() {
		return c, nil
	}
	cfg, err := tlsfiles.Load(c.CACertFile, c.CertFile, c.KeyFile)
	var fe *tlsfiles.Error
	if errors.As(err, &fe) {
		return c, &FieldError{Field: fe.Field, Reason: fe.Reason}
	}
	if err != nil {
		return c, err
	}
	c.TLS = cfg
	return c, nil
}

// resolve applies the defaults, validates, and (when dial is true, for
// New) reads the certificate files into TLS: the one path every Config
// takes, whoever built it.
func (c Config) resolve(dial bool) (Config, error) {
	c = c.withDefaults()
	c.Logger = backendLogger(c.Logger)
	if err := c.validateFiles(); err != nil {
		return c, err
	}
	if dial {
		for i, ep := range c.Endpoints {
			if err := configcheck.EtcdEndpoint(ep); err != nil {
				return c, configError("Endpoints[%d] %q: %v", i, envconfig.Redact(ep), err)
			}
		}
	}
	// validateTransport judges TLS by c.TLS: make it say what the files
	// will give before checking.
	probe := c
	if probe.TLS == nil && (c.CACertFile != "" || c.CertFile != "") {
		probe.TLS = &tls.Config{}
	}
	if err := probe.validate(); err != nil {
		return c, err
	}
	if !dial {
		return c, nil
	}
	c, err := c.loadTLS()
	if err != nil {
		return c, err
	}
	if c.Password != "" && c.TLS == nil {
		// Allowed (a development etcd), but worth saying, once.
		c.Logger.Warn(passwordInClearMessage, "endpoints", c.Endpoints, "username", c.Username)
	}
	return c, nil
}
