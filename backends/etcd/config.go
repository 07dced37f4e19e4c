package etcd

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/internal/configcheck"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/internal/tlsfiles"
	"github.com/roster-sd/roster/retry"
)

// Defaults used for the zero values of Config's fields.
const (
	DefaultEndpoint       = "127.0.0.1:2379"
	DefaultDialTimeout    = 5 * time.Second
	DefaultPrefix         = configcheck.EtcdDefaultPrefix // "/roster/services"
	DefaultTTL            = 15 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultReconnectDelay = 800 * time.Millisecond
	// LoggerName names the Backend's logger, under the application's
	// logger when one is given.
	LoggerName = "roster.etcd"
)

// ErrInvalidConfig reports a Config that New or NewWithClient rejects. The
// error names the field and the reason.
var ErrInvalidConfig = errors.New("etcd: invalid config")

// Config configures a Backend. Every field has a documented default used
// when it is left zero.
type Config struct {
	// Endpoints are the etcd client endpoints: "host:port", or http://,
	// https://, unix:// or unixs:// URLs (New rejects any other scheme,
	// naming the endpoint). Default: [DefaultEndpoint]. Ignored by
	// NewWithClient.
	Endpoints []string
	// DialTimeout bounds establishing a connection. Default:
	// DefaultDialTimeout. Ignored by NewWithClient.
	DialTimeout time.Duration
	// TLS, when set, secures the connection (and may carry a client
	// certificate). Ignored by NewWithClient.
	//
	// The etcd client decides on TLS from the endpoints' schemes, for all
	// of them at once: https:// and unixs:// use TLS (with the system's
	// roots when TLS is nil), http:// and unix:// are plain text, and a
	// bare host:port uses TLS when it is set. A Config whose endpoints
	// contradict each other or TLS is rejected with ErrInvalidConfig
	// naming the endpoint, rather than connecting in plain text: TLS set
	// with an http:// or unix:// endpoint, or (TLS nil) an https:// or
	// unixs:// endpoint beside an http://, unix:// or bare one.
	//
	// TLS is used as it is; setting it together with CACertFile, CertFile
	// or KeyFile is an error.
	TLS *tls.Config
	// CACertFile is a PEM file of the certificate authorities that sign
	// etcd's server certificate, read by New. Setting it (or CertFile)
	// asks for TLS as TLS does. Default: the system's roots. Ignored by
	// NewWithClient.
	CACertFile string
	// CertFile and KeyFile are PEM files of a client certificate and its
	// key, for etcd's client certificate authentication, read by New.
	// Both or neither. Ignored by NewWithClient.
	CertFile string
	// KeyFile goes with CertFile.
	KeyFile string
	// Username and Password authenticate to etcd when auth is enabled.
	// The password is never logged. Over a connection without TLS it
	// travels in clear, which is allowed (a development etcd): New then
	// logs a warning (see PasswordInClear). Ignored by NewWithClient.
	Username string
	// Password goes with Username.
	Password string

	// Prefix is the key prefix under which every key is written: an
	// absolute path of one or more segments, without a trailing slash.
	// Nothing is ever written outside it. Default: DefaultPrefix.
	Prefix string
	// TTL is the lease TTL: how long etcd keeps the instances after the
	// process stops renewing it. Whole seconds, at least 1 s (etcd counts
	// TTLs in seconds). Default: DefaultTTL.
	TTL time.Duration
	// Retry is the policy for restoring registrations after a failure.
	// Default (zero value): retry.Default(), 1 s doubling to 30 s,
	// jittered. The Backend never gives up on a registration.
	Retry retry.Policy
	// RequestTimeout bounds each etcd request the Backend makes on its own
	// (keep-alive checks, re-registration, revocation on Close). Default:
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// DrainOnClose, when positive, makes Close take the Backend's
	// instances out of rotation before it revokes its lease: it publishes every
	// registered instance in discovery.ConditionDraining (an update in
	// place) and waits for the rest of DrainOnClose, so that watchers see
	// it and clients stop sending new work. Close takes at most
	// DrainOnClose longer: with the registry unreachable it gives up the
	// drain then, and reports it. Default: 0, no drain. An application
	// that drains its instances itself (discovery.Drain, the fx module's
	// DrainDelay) does not need it.
	DrainOnClose time.Duration
	// ReconnectDelay bounds the gRPC reconnect backoff under the etcd
	// client: while etcd is unreachable the client tries to connect about
	// once per ReconnectDelay (jittered by 20%), so a returning etcd is
	// noticed within that time whatever the outage length. Default:
	// DefaultReconnectDelay. Ignored by NewWithClient, whose client keeps
	// its own dial options.
	ReconnectDelay time.Duration
	// SerializableReads makes Resolve and the initial list of Watch read
	// from the local member without a quorum round trip (possibly stale).
	// Default: linearizable reads.
	SerializableReads bool

	// Logger receives the Backend's logs, under the name LoggerName.
	// Default: an hclog logger named LoggerName writing to stderr at info
	// level.
	Logger hclog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultEndpoint}
	}
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.TTL = cmp.Or(c.TTL, DefaultTTL)
	c.Retry = c.Retry.OrDefault()
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.ReconnectDelay = cmp.Or(c.ReconnectDelay, DefaultReconnectDelay)
	return c
}

// backendLogger returns the Backend's logger: l named LoggerName, or a
// default one.
func backendLogger(l hclog.Logger) hclog.Logger {
	if l == nil {
		return hclog.New(&hclog.LoggerOptions{Name: LoggerName, Level: hclog.Info})
	}
	return l.Named(LoggerName)
}

// validate checks a Config with its defaults applied.
func (c Config) validate() error {
	for i, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return configError("Endpoints[%d] is empty", i)
		}
	}
	switch {
	case c.DialTimeout < 0:
		return configError("DialTimeout is %v; want a positive duration", c.DialTimeout)
	case ttlProblem(c.TTL) != "":
		return configError("TTL is %v; %s", c.TTL, ttlProblem(c.TTL))
	case c.RequestTimeout < 0:
		return configError("RequestTimeout is %v; want a positive duration", c.RequestTimeout)
	case c.DrainOnClose < 0:
		return configError("DrainOnClose is %v; want zero or more", c.DrainOnClose)
	case c.ReconnectDelay < 0:
		return configError("ReconnectDelay is %v; want a positive duration", c.ReconnectDelay)
	case c.Password != "" && c.Username == "":
		return configError("Password is set but Username is empty")
	}
	if err := c.Retry.Validate(); err != nil {
		return configError("Retry: %v", err)
	}
	if err := c.validateTransport(); err != nil {
		return err
	}
	return validatePrefix(c.Prefix)
}

// endpointScheme returns the scheme of an etcd endpoint, lower case, as
// the etcd client reads it (see configcheck.EtcdScheme).
func endpointScheme(ep string) string { return configcheck.EtcdScheme(ep) }

// endpointUsesTLS reports whether the etcd client would want TLS for ep:
// https and unixs always, http and unix never, and any other endpoint
// (host:port) when the Config has TLS.
func (c Config) endpointUsesTLS(ep string) bool {
	switch endpointScheme(ep) {
	case "https", "unixs":
		return true
	case "http", "unix":
		return false
	default:
		return c.TLS != nil
	}
}

// validateTransport rejects endpoints whose schemes contradict TLS or each
// other. The etcd client takes the first endpoint's scheme for all of them
// (an http:// first endpoint drops TLS for every endpoint, an https:// one
// forces it on every endpoint), so a mix would silently connect some
// endpoint in a way its scheme or the TLS setting did not ask for: in
// plain text, with any password in clear.
func (c Config) validateTransport() error {
	// First the schemes among themselves, whatever TLS says.
	tlsAt, plainAt := -1, -1
	for i, ep := range c.Endpoints {
		switch endpointScheme(ep) {
		case "https", "unixs":
			if tlsAt < 0 {
				tlsAt = i
			}
		case "http", "unix":
			if plainAt < 0 {
				plainAt = i
			}
		}
	}
	if tlsAt < 0 || plainAt < 0 {
		// Then every endpoint against TLS.
		tlsAt, plainAt = -1, -1
		for i, ep := range c.Endpoints {
			switch {
			case c.endpointUsesTLS(ep):
				if tlsAt < 0 {
					tlsAt = i
				}
			case c.TLS != nil:
				if endpointScheme(ep) == "unix" {
					return configError("Endpoints[%d] %q is a plain-text unix:// endpoint but TLS is set; "+
						"use unixs:// for a TLS socket (or drop TLS)", i, ep)
				}
				return configError("Endpoints[%d] %q is a plain-text http:// endpoint but TLS is set, "+
					"which the etcd client would ignore, connecting in plain text; "+
					"use https:// (or drop TLS)", i, ep)
			case plainAt < 0:
				plainAt = i
			}
		}
	}
	if tlsAt >= 0 && plainAt >= 0 {
		return configError("Endpoints[%d] %q asks for TLS but Endpoints[%d] %q does not, "+
			"and the etcd client uses TLS for every endpoint or for none; "+
			"give every endpoint the https:// (or unixs://) scheme, or set TLS for host:port endpoints",
			tlsAt, c.Endpoints[tlsAt], plainAt, c.Endpoints[plainAt])
	}
	return nil
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

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
