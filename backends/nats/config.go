package nats

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
	DefaultURL            = "nats://127.0.0.1:4222"
	DefaultBucket         = "roster"
	DefaultTTL            = 15 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultReconnectDelay = 250 * time.Millisecond
	// DefaultMarkerTTL is how long a bucket created by New keeps the
	// markers that tell watchers a key expired or was removed.
	DefaultMarkerTTL = time.Minute
	// MinTTL is the smallest TTL: nats-server counts message TTLs in
	// seconds.
	MinTTL = configcheck.NATSMinTTL // 1s

	// LoggerName names the Backend's logger, under the application's
	// logger when one is given.
	LoggerName = "roster.nats"
)

// ErrInvalidConfig reports a Config that New rejects. The error names the
// field and the reason.
var ErrInvalidConfig = errors.New("nats: invalid config")

// ErrBucketSettings reports an existing key-value bucket that lacks a
// setting the Backend needs; the error names what is missing.
var ErrBucketSettings = errors.New("nats: bucket lacks the settings roster needs")

// Config configures a Backend. Every field has a documented default used
// when it is left zero.
type Config struct {
	// Endpoints are the NATS server URLs ("nats://host:port",
	// "tls://host:port") or host:port pairs; the client connects to one
	// and fails over to the others. A URL may carry credentials
	// ("nats://user:password@host:port", "nats://token@host:port"), which
	// errors and logs leave out. Default: [DefaultURL].
	Endpoints []string
	// Bucket is the JetStream key-value bucket holding the instances. New
	// creates it if absent, allowing per-message TTLs and with limit
	// markers (DefaultMarkerTTL) so that an expiry reaches watchers; an
	// existing bucket without them is rejected with an error wrapping
	// ErrBucketSettings. Default: DefaultBucket.
	Bucket string
	// Replicas is the number of replicas of a bucket New creates (1 to 5).
	// Default: 1.
	Replicas int
	// TTL is how long NATS keeps an instance after the process stops
	// renewing it. Whole seconds, at least MinTTL. Default: DefaultTTL.
	TTL time.Duration
	// Retry is the policy for restoring registrations after a failure.
	// Default (zero value): retry.Default(). The Backend never gives up.
	Retry retry.Policy
	// DialTimeout bounds establishing a connection. Default:
	// DefaultDialTimeout. During a partition that holds new connections,
	// a reconnection attempt hangs for DialTimeout and the NATS client
	// holds its lock meanwhile, so the Backend's requests (and the
	// retrying status) may lag by up to that long.
	DialTimeout time.Duration
	// RequestTimeout bounds each request the Backend makes on its own
	// (renewals, restores, removals on Close). Default:
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// DrainOnClose, when positive, makes Close take the Backend's
	// instances out of rotation before it removes its keys: it publishes every
	// registered instance in discovery.ConditionDraining (an update in
	// place) and waits for the rest of DrainOnClose, so that watchers see
	// it and clients stop sending new work. Close takes at most
	// DrainOnClose longer: with the registry unreachable it gives up the
	// drain then, and reports it. Default: 0, no drain. An application
	// that drains its instances itself (discovery.Drain, the fx module's
	// DrainDelay) does not need it.
	DrainOnClose time.Duration
	// ReconnectDelay is how long the client first waits between two
	// rounds of connection attempts (one to each endpoint) while no
	// server can be reached. The wait doubles each round, up to four
	// ReconnectDelays per endpoint (3 s for three endpoints at the
	// default), plus up to 20% of jitter: a returning server is noticed
	// within that long, and a fleet retrying an unreachable cluster makes
	// about one connection attempt per process per second. A dropped
	// connection is made again at once to another server that answers.
	// Default: DefaultReconnectDelay. (A link that goes silent is noticed
	// by the client's pings, every TTL/3, two missed.)
	ReconnectDelay time.Duration
	// TLS, when set, secures the connection (and may carry a client
	// certificate), and is used as it is: CACertFile, CertFile and
	// KeyFile must then be empty.
	TLS *tls.Config
	// CACertFile is a PEM CA bundle that verifies the server's
	// certificate; setting it (or CertFile) turns TLS on. Default: the
	// system's roots, when an endpoint is tls:// or the server requires
	// TLS.
	CACertFile string
	// CertFile is a PEM client certificate presented to the server, with
	// KeyFile.
	CertFile string
	// KeyFile is the PEM private key of CertFile.
	KeyFile string
	// Username and Password authenticate with user/password. The password
	// is never logged.
	Username string
	// Password goes with Username.
	Password string
	// Token authenticates with a token; it excludes Username.
	Token string
	// CredentialsFile is a NATS .creds file (a user JWT and its NKey
	// seed), for decentralized authentication.
	CredentialsFile string
	// NKeySeedFile is a file holding an NKey user seed, for NKey
	// authentication.
	NKeySeedFile string
	// Logger receives the Backend's logs, under the name LoggerName.
	// Default: an hclog logger named LoggerName writing to stderr at info
	// level.
	Logger hclog.Logger
}

func (c Config) withDefaults() Config {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultURL}
	}
	c.Bucket = cmp.Or(c.Bucket, DefaultBucket)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.TTL = cmp.Or(c.TTL, DefaultTTL)
	c.Retry = c.Retry.OrDefault()
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.ReconnectDelay = cmp.Or(c.ReconnectDelay, DefaultReconnectDelay)
	return c
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// validate checks a Config with its defaults applied.
func (c Config) validate() error {
	for i, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return configError("Endpoints[%d] is empty", i)
		}
		if strings.Contains(ep, ",") {
			return configError("Endpoints[%d] is %q; want one URL per element", i, envconfig.Redact(ep))
		}
		if err := configcheck.NATSEndpoint(ep); err != nil {
			return configError("Endpoints[%d] %q: %v", i, envconfig.Redact(ep), err)
		}
	}
	if err := tlsfiles.CheckPairs(c.TLS != nil, c.CACertFile, c.CertFile, c.KeyFile); err != nil {
		return configError("%v", err)
	}
	auth := 0
	for _, set := range []bool{c.Username != "", c.Token != "", c.CredentialsFile != "", c.NKeySeedFile != ""} {
		if set {
			auth++
		}
	}
	switch {
	case !validBucket(c.Bucket):
		return configError("Bucket is %q; want letters, digits, '-' and '_' only", c.Bucket)
	case c.Replicas < 1 || c.Replicas > 5:
		return configError("Replicas is %d; want 1 to 5", c.Replicas)
	case configcheck.NATSTTL(c.TTL) != nil:
		return configError("TTL is %v; %v", c.TTL, configcheck.NATSTTL(c.TTL))
	case c.DialTimeout < 0:
		return configError("DialTimeout is %v; want a positive duration", c.DialTimeout)
	case c.RequestTimeout < 0:
		return configError("RequestTimeout is %v; want a positive duration", c.RequestTimeout)
	case c.DrainOnClose < 0:
		return configError("DrainOnClose is %v; want zero or more", c.DrainOnClose)
	case c.ReconnectDelay < 0:
		return configError("ReconnectDelay is %v; want a positive duration", c.ReconnectDelay)
	case c.Password != "" && c.Username == "":
		return configError("Password is set but Username is empty")
	case auth > 1:
		return configError("Username, Token, CredentialsFile and NKeySeedFile exclude each other; %d are set", auth)
	}
	if err := c.Retry.Validate(); err != nil {
		return configError("Retry: %v", err)
	}
	return nil
}

// validBucket reports whether s is a bucket name New accepts.
func validBucket(s string) bool { return configcheck.NATSBucket(s) == nil }

// backendLogger returns the Backend's logger: l named LoggerName, or a
// default one.
func backendLogger(l hclog.Logger) hclog.Logger {
	if l == nil {
		return hclog.New(&hclog.LoggerOptions{Name: LoggerName, Level: hclog.Info})
	}
	return l.Named(LoggerName)
}

// CredentialsInClearMessage is the warning New logs, once, for a Backend
// whose password or token travels without TLS (CredentialsInClear).
const CredentialsInClearMessage = "the NATS password or token is sent in clear: the connection does not use TLS"

// CredentialsInClear reports whether c sends a password or a token (in
// Password, Token or an endpoint's URL) to a server it may reach without
// TLS: TLS is neither given nor built from CACertFile or CertFile, and an
// endpoint is nats://, ws:// or host:port. (A server that requires TLS
// makes the client upgrade the connection before it authenticates; New's
// Backend.CredentialsInClear knows, once connected.) NKey seeds and
// credentials files prove the user with a signature and are never sent.
func (c Config) CredentialsInClear() bool {
	if c.TLS != nil || c.CACertFile != "" || c.CertFile != "" {
		return false
	}
	secret := c.Password != "" || c.Token != ""
	plain := false
	for _, ep := range c.withDefaults().Endpoints {
		scheme, rest, hasScheme := strings.Cut(ep, "://")
		if hasScheme && (scheme == "tls" || scheme == "wss") {
			continue
		}
		plain = true
		if hasScheme && strings.Contains(rest, "@") {
			secret = true
		}
	}
	return secret && plain
}

// loadTLS returns c with TLS built from the certificate files when any is
// set; c.TLS, when set, is kept as it is. A file that cannot be used gives
// an error wrapping ErrInvalidConfig that names its field.
func (c Config) loadTLS() (Config, error) {
	if c.TLS != nil || c.CACertFile == "" && c.CertFile == "" {
		return c, nil
	}
	cfg, err := tlsfiles.Load(c.CACertFile, c.CertFile, c.KeyFile)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.TLS = cfg
	return c, nil
}
