package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/configcheck"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/internal/tlsfiles"
)

// The connection flags and the environment variables they stand for: a
// flag given on the command line wins, and its variable is then not read
// at all. The variables themselves are read by the selected backend's
// ConfigFromEnv. ttl is register's own flag; only is the backend the flag
// belongs to, when it is not every networked backend's.
var connectionEnv = []struct{ flag, env, only string }{
	{"backend", backends.EnvBackend, ""},
	{"endpoints", backends.EnvEndpoints, ""},
	{"prefix", backends.EnvPrefix, backends.Etcd},
	{"bucket", backends.EnvBucket, backends.NATS},
	{"cacert", backends.EnvCACert, ""},
	{"cert", backends.EnvCert, ""},
	{"key", backends.EnvKey, ""},
	{"user", backends.EnvUsername, ""},
	{"password", backends.EnvPassword, ""},
	{"creds", backends.EnvCredentials, backends.NATS},
	{"nkey-seed", backends.EnvNKeySeed, backends.NATS},
	{"timeout", backends.EnvTimeout, ""},
	{"ttl", backends.EnvTTL, ""},
}

// envOnly lists the variables the command line reads without a flag: a
// token on the command line would show in the process list.
var envOnly = []string{backends.EnvToken}

func addConnectionFlags(fs *pflag.FlagSet) {
	fs.String("backend", backends.Etcd, "registry: etcd or nats ($"+backends.EnvBackend+")")
	fs.StringSlice("endpoints", nil, "registry endpoints, comma-separated: etcd's host:port or URLs (default "+
		etcd.DefaultEndpoint+"), NATS's nats:// or tls:// URLs (default "+nats.DefaultURL+") ($"+backends.EnvEndpoints+")")
	fs.String("prefix", etcd.DefaultPrefix, "etcd: key prefix of the registry ($"+backends.EnvPrefix+")")
	fs.String("bucket", nats.DefaultBucket, "NATS: key-value bucket of the registry ($"+backends.EnvBucket+")")
	fs.String("cacert", "", "verify the registry's certificate with this CA bundle, PEM ($"+backends.EnvCACert+")")
	fs.String("cert", "", "client certificate file for TLS, PEM ($"+backends.EnvCert+")")
	fs.String("key", "", "private key file of --cert, PEM ($"+backends.EnvKey+")")
	fs.String("user", "", "user name ($"+backends.EnvUsername+")")
	fs.String("password", "", "password; visible to other local users in the process list (ps): set $"+backends.EnvPassword+" instead")
	fs.String("creds", "", "NATS: credentials file, a user JWT and its NKey seed ($"+backends.EnvCredentials+"); a token is read from $"+backends.EnvToken+" only")
	fs.String("nkey-seed", "", "NATS: file holding an NKey user seed ($"+backends.EnvNKeySeed+")")
	fs.Duration("timeout", etcd.DefaultDialTimeout, "dial and request timeout ($"+backends.EnvTimeout+")")
	fs.BoolP("verbose", "v", false, "log the backend's activity on stderr")
}

// settings is the command line's choice of backend and its configuration.
type settings struct {
	backend string      // backends.Etcd or backends.NATS
	etcd    etcd.Config // with its defaults, when backend is etcd
	nats    nats.Config // with its defaults, when backend is nats
}

// endpoints returns the selected backend's endpoints.
func (s settings) endpoints() []string {
	if s.backend == backends.NATS {
		return s.nats.Endpoints
	}
	return s.etcd.Endpoints
}

// timeout returns the dial timeout, which also bounds each command's
// requests (requestContext).
func (s settings) timeout() time.Duration {
	if s.backend == backends.NATS {
		return s.nats.DialTimeout
	}
	return s.etcd.DialTimeout
}

// ttl returns the instances' TTL.
func (s settings) ttl() time.Duration {
	if s.backend == backends.NATS {
		return s.nats.TTL
	}
	return s.etcd.TTL
}

// logger returns the backend's logger.
func (s settings) logger() hclog.Logger {
	if s.backend == backends.NATS {
		return s.nats.Logger
	}
	return s.etcd.Logger
}

// describe names the registry v for the web view: its backend, endpoints
// and where it keeps the instances.
func (s settings) describe(v discovery.OperatorView) string {
	return s.registryName() + " " + shownEndpoints(s.endpoints()) + " " + strings.TrimPrefix(strings.TrimPrefix(v.Where(), "under "), "in ")
}

// shownEndpoints returns eps as the command line shows them, in errors and
// on the web view's page: comma-separated, with the credentials of an
// endpoint's URL (nats://user:password@host, nats://token@host) redacted.
func shownEndpoints(eps []string) string { return envconfig.Redact(strings.Join(eps, ",")) }

// registryName names the registry in messages: "etcd" or "NATS".
func (s settings) registryName() string {
	if s.backend == backends.NATS {
		return "NATS"
	}
	return "etcd"
}

// loadSettings builds the backend's configuration from the flags in fs and
// the environment: the flags given on the command line stand for their
// variables, the other variables are read as they are, and the selected
// backend's ConfigFromEnv reads the result, as the fx module reads the
// environment. ROSTER_BACKEND (or --backend) selects etcd (the default) or
// nats; "memory" is refused, since a memory registry lives inside the
// process that made it. Invalid values give an inputError naming the flag
// or the variable; the password and the token never appear in an error.
// Certificate files are read, and the remaining checks made, by the
// backend's New.
func loadSettings(fs *pflag.FlagSet) (settings, error) {
	given := make(map[string]string) // variable -> its flag, when given
	for _, m := range connectionEnv {
		if f := fs.Lookup(m.flag); f != nil && f.Changed {
			given[m.env] = m.flag
		}
	}
	var s settings
	var err error
	if s.backend, err = backendName(fs); err != nil {
		return s, err
	}
	for _, m := range connectionEnv {
		if _, ok := given[m.env]; ok && m.only != "" && m.only != s.backend {
			return s, inputErrorf("--%s is a setting of the %s backend, not of %s", m.flag, m.only, s.backend)
		}
	}

	// The flags' values, checked here so that errors name the flag; a
	// value is what the variable it stands for would hold.
	value := make(map[string]string) // variable -> value of its given flag
	for env, flag := range given {
		v, err := flagValue(fs, s.backend, flag)
		if err != nil {
			return s, err
		}
		value[env] = v
	}
	lookup := func(name string) (string, bool) {
		if _, ok := given[name]; ok {
			return value[name], true
		}
		return os.LookupEnv(name)
	}
	// Pairs first, naming where each value came from.
	get := func(env string) string {
		v, _ := lookup(env)
		if env == backends.EnvPassword {
			return v
		}
		return strings.TrimSpace(v)
	}
	from := func(flag, env string) string { return sourceOf(fs, flag, env) }
	switch {
	case get(backends.EnvPassword) != "" && get(backends.EnvUsername) == "":
		return s, inputErrorf("%s is set but %s is empty",
			from("password", backends.EnvPassword), from("user", backends.EnvUsername))
	case get(backends.EnvCert) != "" && get(backends.EnvKey) == "":
		return s, inputErrorf("%s is set but %s is empty: a client certificate needs its key",
			from("cert", backends.EnvCert), from("key", backends.EnvKey))
	case get(backends.EnvCert) == "" && get(backends.EnvKey) != "":
		return s, inputErrorf("%s is set but %s is empty: a key needs its client certificate",
			from("key", backends.EnvKey), from("cert", backends.EnvCert))
	}

	if s.backend == backends.NATS {
		// NATS's ways to authenticate exclude each other. ConfigFromEnv
		// says so too, but it names the variables even for given flags.
		var auth []string
		for _, m := range []struct{ flag, env string }{
			{"user", backends.EnvUsername},
			{"", backends.EnvToken}, // no flag: read from the environment only
			{"creds", backends.EnvCredentials},
			{"nkey-seed", backends.EnvNKeySeed},
		} {
			if get(m.env) == "" {
				continue
			}
			if m.flag == "" {
				auth = append(auth, m.env)
			} else {
				auth = append(auth, from(m.flag, m.env))
			}
		}
		if len(auth) > 1 {
			return s, inputErrorf("%s are all set; they exclude each other: give one way to authenticate", strings.Join(auth, " and "))
		}
		if s.nats, err = nats.ConfigFromEnv(lookup); err != nil {
			return s, inputError{err}
		}
		return s.withDefaults(), nil
	}
	if s.etcd, err = etcd.ConfigFromEnv(lookup); err != nil {
		return s, inputError{withNATSHint(err)}
	}
	return s.withDefaults(), nil
}

// withDefaults returns s with the defaults of what the commands show and
// go by (endpoints, prefix or bucket, timeouts, TTL) filled in, as the backend's New fills
// them: the commands print the endpoints, and bound their requests by
// DialTimeout (requestContext). The backends document these defaults
// as constants.
func (s settings) withDefaults() settings {
	if s.backend == backends.NATS {
		if len(s.nats.Endpoints) == 0 {
			s.nats.Endpoints = []string{nats.DefaultURL}
		}
		s.nats.Bucket = cmp.Or(s.nats.Bucket, nats.DefaultBucket)
		s.nats.DialTimeout = cmp.Or(s.nats.DialTimeout, nats.DefaultDialTimeout)
		s.nats.RequestTimeout = cmp.Or(s.nats.RequestTimeout, nats.DefaultRequestTimeout)
		s.nats.TTL = cmp.Or(s.nats.TTL, nats.DefaultTTL)
		return s
	}
	if len(s.etcd.Endpoints) == 0 {
		s.etcd.Endpoints = []string{etcd.DefaultEndpoint}
	}
	s.etcd.Prefix = cmp.Or(s.etcd.Prefix, etcd.DefaultPrefix)
	s.etcd.DialTimeout = cmp.Or(s.etcd.DialTimeout, etcd.DefaultDialTimeout)
	s.etcd.RequestTimeout = cmp.Or(s.etcd.RequestTimeout, etcd.DefaultRequestTimeout)
	s.etcd.TTL = cmp.Or(s.etcd.TTL, etcd.DefaultTTL)
	return s
}

// backendName returns the backend that --backend, or else ROSTER_BACKEND,
// selects: backends.Etcd (the default) or backends.NATS.
func backendName(fs *pflag.FlagSet) (string, error) {
	name := strings.TrimSpace(os.Getenv(backends.EnvBackend))
	if f := fs.Lookup("backend"); f != nil && f.Changed {
		name = strings.TrimSpace(f.Value.String())
	}
	switch name {
	case "", backends.Etcd:
		return backends.Etcd, nil
	case backends.NATS:
		return backends.NATS, nil
	}
	why := ""
	if name == backends.Memory {
		why = " (a memory registry lives inside one process: there is none for the command line to reach)"
	}
	return "", inputErrorf("invalid %s %q: the roster command line supports %q and %q%s",
		sourceOf(fs, "backend", backends.EnvBackend), name, backends.Etcd, backends.NATS, why)
}

// flagValue returns the value of the given flag as the variable it stands
// for would hold it, after checking it for backend; errors name the flag.
func flagValue(fs *pflag.FlagSet, backend, flag string) (string, error) {
	switch flag {
	case "endpoints":
		eps, err := fs.GetStringSlice("endpoints")
		if err != nil {
			return "", fmt.Errorf("read --endpoints: %w", err)
		}
		check := configcheck.EtcdEndpoint
		if backend == backends.NATS {
			check = configcheck.NATSEndpoint
		}
		var out []string
		list := strings.Join(eps, ",") // as given: the flag splits at commas, even in a password
		for i, ep := range eps {
			if ep = strings.TrimSpace(ep); ep == "" {
				continue
			}
			if err := check(ep); err != nil {
				if backend != backends.NATS {
					err = withNATSHint(err)
				}
				return "", inputErrorf("invalid --endpoints %s: %v", envconfig.QuoteElement(list, ep, i+1), err)
			}
			out = append(out, ep)
		}
		if len(out) == 0 {
			return "", inputErrorf("--endpoints has no endpoint")
		}
		return strings.Join(out, ","), nil
	case "timeout", "ttl":
		d, err := fs.GetDuration(flag)
		if err != nil {
			return "", fmt.Errorf("read --%s: %w", flag, err)
		}
		if flag == "timeout" && d <= 0 {
			return "", inputErrorf("invalid --timeout %v: want a positive duration", d)
		}
		if flag == "ttl" {
			check := configcheck.EtcdTTL
			if backend == backends.NATS {
				check = configcheck.NATSTTL
			}
			if err := check(d); err != nil {
				return "", inputErrorf("invalid --ttl %v: %v", d, err)
			}
		}
		return d.String(), nil
	case "prefix":
		p, _ := fs.GetString(flag)
		if err := configcheck.EtcdPrefix(p); err != nil {
			return "", inputErrorf("invalid --prefix %q: %v", p, err)
		}
		return p, nil
	case "bucket":
		b, _ := fs.GetString(flag)
		if err := configcheck.NATSBucket(b); err != nil {
			return "", inputErrorf("invalid --bucket %q: %v", b, err)
		}
		return b, nil
	default:
		v, err := fs.GetString(flag)
		if err != nil {
			return "", fmt.Errorf("read --%s: %w", flag, err)
		}
		return v, nil
	}
}

// newRegistry loads the settings from the flags in fs and the environment
// and connects to the registry they select. etcd.New and nats.New read
// the certificate files and reject what does not hold together (TLS
// settings with an http:// endpoint, endpoints that mix TLS and plain
// text), naming the field or the endpoint; the etcd backend warns about a
// password sent without TLS (see logger). etcd is dialled lazily (it waits
// for etcd only with credentials); NATS is connected to at once.
func (a *app) newRegistry(ctx context.Context, fs *pflag.FlagSet) (registry, settings, error) {
	s, err := loadSettings(fs)
	if err != nil {
		return nil, s, err
	}
	fileFlags := map[string]string{ // the Config's file field -> where it came from
		"CACertFile": sourceOf(fs, "cacert", backends.EnvCACert),
		"CertFile":   sourceOf(fs, "cert", backends.EnvCert) + "/" + sourceOf(fs, "key", backends.EnvKey),
	}
	var r registry
	if s.backend == backends.NATS {
		s.nats.Logger = a.logger(fs)
		var b *nats.Backend
		b, err = nats.New(s.nats)
		if err == nil {
			r = b
			a.warnInClear(s, b.CredentialsInClear())
		}
	} else {
		s.etcd.Logger = a.logger(fs)
		a.warnInClear(s, s.etcd.PasswordInClear()) // before New, which may wait to log in
		var b *etcd.Backend
		b, err = etcd.New(s.etcd)
		if err == nil {
			r = b
		}
	}
	var fe *etcd.FieldError
	var te *tlsfiles.Error
	switch {
	case errors.As(err, &fe) && fileFlags[fe.Field] != "":
		return nil, s, inputErrorf("invalid %s: %s", fileFlags[fe.Field], fe.Reason)
	case errors.As(err, &te) && fileFlags[te.Field] != "":
		return nil, s, inputErrorf("invalid %s: %s", fileFlags[te.Field], te.Reason)
	case errors.Is(err, etcd.ErrInvalidConfig), errors.Is(err, nats.ErrInvalidConfig), errors.Is(err, nats.ErrBucketSettings):
		return nil, s, inputError{err}
	case err != nil:
		// With credentials, the etcd client logs in while connecting;
		// the NATS client always connects at once.
		return nil, s, registryError(ctx, s, err)
	}
	return r, s, nil
}

// natsSchemes are the schemes of NATS URLs, as etcd's endpoint check
// names them in its error.
var natsSchemes = []string{"scheme nats://", "scheme tls://", "scheme ws://", "scheme wss://"}

// withNATSHint adds to err, etcd's refusal of an endpoint, that a NATS
// endpoint needs --backend nats.
func withNATSHint(err error) error {
	for _, scheme := range natsSchemes {
		if strings.Contains(err.Error(), scheme) {
			return fmt.Errorf("%w (a NATS endpoint: add --backend nats, or set %s=%s)", err, backends.EnvBackend, backends.NATS)
		}
	}
	return err
}

// sourceOf names where a connection setting came from: the flag when it
// was given or when the variable is not set either, else the variable.
func sourceOf(fs *pflag.FlagSet, flag, env string) string {
	if f := fs.Lookup(flag); f != nil && f.Changed {
		return "--" + flag
	}
	if v, ok := os.LookupEnv(env); ok && strings.TrimSpace(v) != "" {
		return env
	}
	return "--" + flag
}

// logger returns the backend's logger: everything on stderr with
// --verbose, and nothing otherwise (what the user must know, such as a
// password sent in clear, the command asks the backend: warnInClear).
func (a *app) logger(fs *pflag.FlagSet) hclog.Logger {
	if v, _ := fs.GetBool("verbose"); v {
		// No name of its own: the backends name their loggers "roster.etcd"
		// and "roster.nats" under the one they are given.
		return hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: a.stderr})
	}
	return hclog.NewNullLogger()
}

// warnInClear prints a "roster: warning:" line when the backend sends a
// password (or NATS token) without TLS, as the backend itself says.
func (a *app) warnInClear(s settings, inClear bool) {
	if !inClear {
		return
	}
	if s.backend == backends.NATS {
		a.warnf("the password or token is sent to NATS in clear: %s does not use TLS (give tls:// endpoints, or --cacert)",
			shownEndpoints(s.endpoints()))
		return
	}
	a.warnf("the password is sent to etcd in clear: %s does not use TLS (give https:// endpoints, or --cacert)",
		shownEndpoints(s.endpoints()))
}

// registryError describes a failed request to the registry: a deadline
// names the endpoints and the timeout, so that an unreachable registry is
// plain to see. parent is the command's context: when it ended (Ctrl+C),
// the error says so.
func registryError(parent context.Context, s settings, err error) error {
	eps := shownEndpoints(s.endpoints())
	switch {
	case parent.Err() != nil:
		return errors.New("interrupted")
	case errors.Is(err, context.DeadlineExceeded):
		// What timed out adds nothing: the command says what it was doing.
		timedOut := fmt.Errorf("%s at %s did not answer within %v: %w", s.registryName(), eps, s.timeout(), context.DeadlineExceeded)
		if s.backend == backends.NATS {
			return timedOut
		}
		// etcd's client says nothing of why: find out.
		ctx, cancel := context.WithTimeout(context.Background(), min(s.timeout(), 2*time.Second))
		defer cancel()
		problem := etcd.CheckConnection(ctx, s.etcd)
		var dialErr *net.OpError
		switch {
		case problem == nil:
			return timedOut
		case errors.As(problem, &dialErr) && dialErr.Op == "dial":
			return fmt.Errorf("%w (nothing answers there: is `roster dev` running?)", timedOut)
		}
		return errors.New(strings.NewReplacer(
			"(TLS, CACertFile)", "(--cacert)",
			"without TLS settings", "without --cacert, --cert and --key",
		).Replace(problem.Error()))
	default:
		return fmt.Errorf("%s at %s: %w", s.registryName(), eps, err)
	}
}

// requestContext bounds one command's requests by the timeout.
func requestContext(parent context.Context, s settings) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.timeout())
}
