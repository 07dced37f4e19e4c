package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/retry"
)

// Defaults used for the zero values of Config's fields.
const (
	DefaultEndpoint       = "127.0.0.1:2379"
	DefaultDialTimeout    = 5 * time.Second
	DefaultPrefix         = "/roster/services"
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
	// Endpoints are the etcd client endpoints, "host:port" or URLs.
	// Default: [DefaultEndpoint]. Ignored by NewWithClient.
	Endpoints []string
	// DialTimeout bounds establishing a connection. Default:
	// DefaultDialTimeout. Ignored by NewWithClient.
	DialTimeout time.Duration
	// TLS, when set, secures the connection (and may carry a client
	// certificate). Ignored by NewWithClient.
	TLS *tls.Config
	// Username and Password authenticate to etcd when auth is enabled.
	// The password is never logged. Ignored by NewWithClient.
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
	// jittered. Limits on attempts or elapsed time are ignored: the
	// Backend never gives up on a registration.
	Retry retry.Policy
	// RequestTimeout bounds each etcd request the Backend makes on its own
	// (keep-alive checks, re-registration, revocation on Close). Default:
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
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
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Retry == (retry.Policy{}) {
		c.Retry = retry.Default()
	}
	// A registration is kept for the life of the process: never stop
	// retrying.
	c.Retry.MaxAttempts, c.Retry.MaxElapsed = 0, 0
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = DefaultReconnectDelay
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: LoggerName, Level: hclog.Info})
	} else {
		c.Logger = c.Logger.Named(LoggerName)
	}
	return c
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
	case c.TTL < time.Second:
		return configError("TTL is %v; want at least 1s", c.TTL)
	case c.TTL%time.Second != 0:
		return configError("TTL is %v; want a whole number of seconds (etcd counts lease TTLs in seconds)", c.TTL)
	case c.RequestTimeout < 0:
		return configError("RequestTimeout is %v; want a positive duration", c.RequestTimeout)
	case c.ReconnectDelay < 0:
		return configError("ReconnectDelay is %v; want a positive duration", c.ReconnectDelay)
	case c.Password != "" && c.Username == "":
		return configError("Password is set but Username is empty")
	}
	if err := c.Retry.Validate(); err != nil {
		return configError("Retry: %v", err)
	}
	return validatePrefix(c.Prefix)
}

// validatePrefix accepts absolute paths of one or more segments of
// printable, non-space ASCII, none of them "." or "..", without a trailing
// slash, so that <Prefix>/<service>/<id> never leaves the prefix.
func validatePrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return configError("Prefix %q must start with '/'", p)
	}
	if strings.HasSuffix(p, "/") {
		return configError("Prefix %q must not end with '/'", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return configError("Prefix %q has byte %q at %d; want printable ASCII without spaces", p, p[i], i)
		}
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return configError("Prefix %q has an empty segment", p)
		case ".", "..":
			return configError("Prefix %q has a %q segment", p, seg)
		}
	}
	return nil
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}
