package etcd

import (
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/internal/tlsfiles"
)

// Names of the environment variables that ConfigFromEnv reads, defined
// once in package backends (which lists every ROSTER_* variable). The fx
// module and the roster command line read them through ConfigFromEnv.
const (
	// EnvEndpoints holds Config.Endpoints, comma-separated.
	EnvEndpoints = backends.EnvEndpoints
	// EnvPrefix holds Config.Prefix.
	EnvPrefix = backends.EnvPrefix
	// EnvTTL holds Config.TTL, a Go duration in whole seconds.
	EnvTTL = backends.EnvTTL
	// EnvCACert holds Config.CACertFile.
	EnvCACert = backends.EnvCACert
	// EnvCert holds Config.CertFile.
	EnvCert = backends.EnvCert
	// EnvKey holds Config.KeyFile.
	EnvKey = backends.EnvKey
	// EnvUsername holds Config.Username.
	EnvUsername = backends.EnvUsername
	// EnvPassword holds Config.Password, taken as it is (spaces kept).
	EnvPassword = backends.EnvPassword
	// EnvTimeout holds both Config.DialTimeout and Config.RequestTimeout.
	EnvTimeout = backends.EnvTimeout
)

// PasswordInClearMessage is the warning a Backend built by New logs, once,
// when Password is set and the connection does not use TLS. The password
// itself is never logged.
const PasswordInClearMessage = "the etcd password is sent in clear: the endpoints do not use TLS"

// PasswordInClear reports whether c sends a password to etcd without TLS:
// a Password with neither TLS nor CACertFile nor CertFile given, and no
// https:// or unixs:// endpoint (which turn TLS on). New allows it (a
// development etcd) and logs PasswordInClearMessage once; a program that
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
// (EnvEndpoints and the others), read through lookup (pass os.LookupEnv).
// Unset and empty variables leave their field zero, that is at its
// default. A malformed value gives an error wrapping ErrInvalidConfig that
// names the variable; the password's value never appears in an error.
//
// It reads only the variables; the certificate files are read when New
// builds the Backend.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	common, err := envconfig.ReadCommon(lookup, "comma-separated host:port or URLs", checkEndpoint, CheckTTL)
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
	if c.Prefix = envconfig.NewReader(lookup).String(EnvPrefix); c.Prefix != "" {
		if reason := prefixProblem(c.Prefix); reason != "" {
			return Config{}, configError("%s %q %s", EnvPrefix, c.Prefix, reason)
		}
	}
	return c, nil
}

// CheckEndpoint reports whether ep is an endpoint New accepts: host:port,
// or an http, https, unix or unixs URL. The error says why not, without
// naming where ep came from.
func CheckEndpoint(ep string) error { return checkEndpoint(ep) }

func checkEndpoint(ep string) error {
	if strings.TrimSpace(ep) == "" {
		return errorString("empty")
	}
	switch endpointScheme(ep) {
	case "unix", "unixs":
		return nil
	case "":
		if strings.Contains(ep, "://") {
			return errorString("want host:port or a URL")
		}
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" || port == "" {
			return errorString("want host:port or an http, https, unix or unixs URL")
		}
		return nil
	case "http", "https":
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			// url.Error's text quotes the URL, credentials and all.
			return errorString("not a valid URL")
		case u.User != nil:
			return errorString("has credentials in it, which etcd does not use: give them as Username and Password")
		case u.Host == "":
			return errorString("URL has no host")
		}
		return nil
	default:
		if !envconfig.IsScheme(endpointScheme(ep)) {
			// Perhaps a piece of a password: not quoted.
			return errorString("want host:port or a URL")
		}
		return errorString("scheme " + endpointScheme(ep) + "://; want http, https, unix or unixs")
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// CheckPrefix reports whether p is a Prefix New accepts (see
// Config.Prefix). The error says why not, without naming where p came
// from.
func CheckPrefix(p string) error {
	if reason := prefixProblem(p); reason != "" {
		return errorString(reason)
	}
	return nil
}

// CheckTTL reports whether a non-zero d is a TTL New accepts: whole
// seconds, at least 1s. The error says why not.
func CheckTTL(d time.Duration) error {
	if reason := ttlProblem(d); reason != "" {
		return errorString(reason)
	}
	return nil
}

// ttlProblem says what is wrong with a non-zero TTL, or "".
func ttlProblem(d time.Duration) string {
	switch {
	case d < time.Second:
		return "want at least 1s"
	case d%time.Second != 0:
		return "want a whole number of seconds (etcd counts lease TTLs in seconds)"
	}
	return ""
}

// prefixProblem says what is wrong with a prefix, or "": it accepts
// absolute paths of one or more segments of printable, non-space ASCII,
// none of them "." or "..", without a trailing slash, so that
// <Prefix>/<service>/<id> never leaves the prefix.
func prefixProblem(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with '/' (an absolute key prefix such as " + DefaultPrefix + ")"
	}
	if strings.HasSuffix(p, "/") {
		return "must not end with '/'"
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return "has a byte that is not printable ASCII or is a space; want printable ASCII without spaces"
		}
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return "has an empty segment"
		case ".", "..":
			return "has a \"" + seg + "\" segment"
		}
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
			if err := checkEndpoint(ep); err != nil {
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
		c.Logger.Warn(PasswordInClearMessage, "endpoints", c.Endpoints, "username", c.Username)
	}
	return c, nil
}
