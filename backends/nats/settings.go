package nats

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/internal/tlsfiles"
)

// ConfigFromEnv builds a Config from the ROSTER_* environment variables,
// read through lookup (pass os.LookupEnv): the variables every networked
// backend shares (backends.EnvEndpoints, EnvTTL, EnvTimeout, EnvCACert,
// EnvCert, EnvKey, EnvUsername, EnvPassword) and the NATS backend's own
// (backends.EnvBucket, EnvToken, EnvCredentials, EnvNKeySeed). EnvTimeout
// sets both DialTimeout and RequestTimeout. Unset and empty variables
// leave their field zero, that is at its default. A malformed value gives
// an error wrapping ErrInvalidConfig that names the variable; the
// password's and the token's values never appear in an error.
//
// It reads only the variables; the files are read when New builds the
// Backend.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	common, err := envconfig.ReadCommon(lookup, "comma-separated nats:// or tls:// URLs", CheckEndpoint, CheckTTL)
	if err != nil {
		return Config{}, configError("%v", err)
	}
	r := envconfig.NewReader(lookup)
	c := Config{
		Endpoints:       common.Endpoints,
		TTL:             common.TTL,
		DialTimeout:     common.Timeout,
		RequestTimeout:  common.Timeout,
		CACertFile:      common.CACertFile,
		CertFile:        common.CertFile,
		KeyFile:         common.KeyFile,
		Username:        common.Username,
		Password:        common.Password,
		Bucket:          r.String(backends.EnvBucket),
		Token:           r.String(backends.EnvToken),
		CredentialsFile: r.String(backends.EnvCredentials),
		NKeySeedFile:    r.String(backends.EnvNKeySeed),
	}
	if c.Bucket != "" && !validBucket(c.Bucket) {
		return Config{}, configError("%s is %q; want letters, digits, '-' and '_' only", backends.EnvBucket, c.Bucket)
	}
	var set []string
	for _, v := range []struct{ name, value string }{
		{backends.EnvUsername, c.Username},
		{backends.EnvToken, c.Token},
		{backends.EnvCredentials, c.CredentialsFile},
		{backends.EnvNKeySeed, c.NKeySeedFile},
	} {
		if v.value != "" {
			set = append(set, v.name)
		}
	}
	if len(set) > 1 {
		return Config{}, configError("%s are all set; they exclude each other: give one way to authenticate",
			strings.Join(set, " and "))
	}
	return c, nil
}

// CheckEndpoint reports whether ep is an endpoint New accepts: host:port,
// or a nats, tls, ws or wss URL with a host. The error says why not,
// without naming where ep came from or quoting it.
func CheckEndpoint(ep string) error {
	if strings.TrimSpace(ep) == "" {
		return errors.New("empty")
	}
	scheme, _, hasScheme := strings.Cut(ep, "://")
	if !hasScheme {
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" || port == "" {
			return errors.New("want host:port or a nats:// or tls:// URL")
		}
		return nil
	}
	switch scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %s://; want nats, tls, ws or wss", scheme)
	}
	// Nothing after "://" is ever quoted: url.Parse's errors quote the
	// URL or a piece of it (a port), which may be part of a password.
	u, err := url.Parse(ep)
	if err != nil {
		return errors.New("not a valid URL" + encodeHint)
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		// NATS URLs have none: a '/', '?' or '#' meant to be in the
		// credentials ended them early.
		return errors.New("URL has a path, query or fragment, which NATS URLs never have" + encodeHint)
	}
	return nil
}

// encodeHint ends CheckEndpoint's errors about a URL's shape.
const encodeHint = " (in a user name, password or token, write '/', '?', '#', '%', '@' and ':' percent-encoded)"

// CheckTTL reports whether a non-zero d is a TTL New accepts: whole
// seconds, at least MinTTL. The error says why not.
func CheckTTL(d time.Duration) error {
	switch {
	case d < MinTTL:
		return fmt.Errorf("want at least %v", MinTTL)
	case d%time.Second != 0:
		return errors.New("want a whole number of seconds (NATS counts message TTLs in seconds)")
	}
	return nil
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

// CheckBucket reports whether name is a Bucket New accepts: letters,
// digits, '-' and '_'. The error says why not.
func CheckBucket(name string) error {
	if !validBucket(name) {
		return errors.New("want letters, digits, '-' and '_' only")
	}
	return nil
}
