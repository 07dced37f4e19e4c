package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
)

// The connection flags and the environment variables they stand for: a
// flag given on the command line wins, and its variable is then not read
// at all. The variables themselves are read by etcd.ConfigFromEnv. ttl is
// register's own flag.
var connectionEnv = []struct{ flag, env string }{
	{"endpoints", etcd.EnvEndpoints},
	{"prefix", etcd.EnvPrefix},
	{"cacert", etcd.EnvCACert},
	{"cert", etcd.EnvCert},
	{"key", etcd.EnvKey},
	{"user", etcd.EnvUsername},
	{"password", etcd.EnvPassword},
	{"timeout", etcd.EnvTimeout},
	{"ttl", etcd.EnvTTL},
}

func addConnectionFlags(fs *pflag.FlagSet) {
	fs.StringSlice("endpoints", []string{etcd.DefaultEndpoint},
		"etcd endpoints, host:port or URL, comma-separated ($"+etcd.EnvEndpoints+")")
	fs.String("prefix", etcd.DefaultPrefix, "key prefix of the registry ($"+etcd.EnvPrefix+")")
	fs.String("cacert", "", "verify etcd's certificate with this CA bundle, PEM ($"+etcd.EnvCACert+")")
	fs.String("cert", "", "client certificate file for TLS, PEM ($"+etcd.EnvCert+")")
	fs.String("key", "", "private key file of --cert, PEM ($"+etcd.EnvKey+")")
	fs.String("user", "", "etcd user name ($"+etcd.EnvUsername+")")
	fs.String("password", "", "etcd password; visible to other local users in the process list (ps): set $"+etcd.EnvPassword+" instead")
	fs.Duration("timeout", etcd.DefaultDialTimeout, "dial and request timeout ($"+etcd.EnvTimeout+")")
	fs.BoolP("verbose", "v", false, "log the etcd backend's activity on stderr")
}

// loadConfig builds the etcd backend configuration: etcd.ConfigFromEnv
// reads the ROSTER_* variables of the flags that were not given, then the
// flags that were given are laid over it. ROSTER_BACKEND, when set, must
// name the etcd backend; "memory" is refused too, since a memory registry
// lives inside the process that made it. Invalid values give an inputError naming the flag
// or the variable; the password never appears in an error. Certificate
// files are read, and the remaining checks made, by etcd.New.
func loadConfig(fs *pflag.FlagSet) (etcd.Config, error) {
	if b, _ := os.LookupEnv(backends.EnvBackend); strings.TrimSpace(b) != "" && strings.TrimSpace(b) != backends.Etcd {
		b = strings.TrimSpace(b)
		why := ""
		if b == backends.Memory {
			why = " (a memory registry lives inside one process: there is none for the command line to reach)"
		}
		return etcd.Config{}, inputErrorf("invalid %s %q: the roster command line supports only %q%s",
			backends.EnvBackend, b, backends.Etcd, why)
	}
	// A flag given on the command line stands for its variable: the
	// variables of flags that take plain strings read the flag's value
	// (so that ROSTER_PASSWORD goes with --user), the others are hidden
	// and the flag's value laid over the result below, with errors naming
	// the flag.
	given := make(map[string]string) // variable -> its flag, when given
	for _, m := range connectionEnv {
		if f := fs.Lookup(m.flag); f != nil && f.Changed {
			given[m.env] = m.flag
		}
	}
	plain := map[string]bool{etcd.EnvCACert: true, etcd.EnvCert: true, etcd.EnvKey: true, etcd.EnvUsername: true, etcd.EnvPassword: true}
	value := func(env string) string {
		if flag, ok := given[env]; ok {
			v, _ := fs.GetString(flag)
			return v
		}
		v, _ := os.LookupEnv(env)
		if env == etcd.EnvPassword {
			return v
		}
		return strings.TrimSpace(v)
	}
	// Pairs first, naming where each value came from.
	from := func(flag, env string) string { return sourceOf(fs, flag, env) }
	switch {
	case value(etcd.EnvPassword) != "" && value(etcd.EnvUsername) == "":
		return etcd.Config{}, inputErrorf("%s is set but %s is empty",
			from("password", etcd.EnvPassword), from("user", etcd.EnvUsername))
	case value(etcd.EnvCert) != "" && value(etcd.EnvKey) == "":
		return etcd.Config{}, inputErrorf("%s is set but %s is empty: a client certificate needs its key",
			from("cert", etcd.EnvCert), from("key", etcd.EnvKey))
	case value(etcd.EnvCert) == "" && value(etcd.EnvKey) != "":
		return etcd.Config{}, inputErrorf("%s is set but %s is empty: a key needs its client certificate",
			from("key", etcd.EnvKey), from("cert", etcd.EnvCert))
	}
	cfg, err := etcd.ConfigFromEnv(func(name string) (string, bool) {
		if _, ok := given[name]; !ok {
			return os.LookupEnv(name)
		}
		if plain[name] {
			return value(name), true
		}
		return "", false
	})
	if err != nil {
		return etcd.Config{}, inputError{err}
	}

	var flagErr error
	str := func(name string) string {
		v, err := fs.GetString(name)
		if err != nil && flagErr == nil {
			flagErr = err // a flag addConnectionFlags did not define
		}
		return v
	}
	if fs.Changed("endpoints") {
		eps, err := fs.GetStringSlice("endpoints")
		if err != nil {
			return etcd.Config{}, fmt.Errorf("read --endpoints: %w", err)
		}
		cfg.Endpoints = nil
		for _, ep := range eps {
			if ep = strings.TrimSpace(ep); ep == "" {
				continue
			}
			if err := etcd.CheckEndpoint(ep); err != nil {
				return etcd.Config{}, inputErrorf("invalid --endpoints %q: %v", ep, err)
			}
			cfg.Endpoints = append(cfg.Endpoints, ep)
		}
		if len(cfg.Endpoints) == 0 {
			return etcd.Config{}, inputErrorf("--endpoints has no endpoint")
		}
	}
	if fs.Changed("prefix") {
		cfg.Prefix = str("prefix")
		if err := etcd.CheckPrefix(cfg.Prefix); err != nil {
			return etcd.Config{}, inputErrorf("invalid --prefix %q: %v", cfg.Prefix, err)
		}
	}
	if fs.Changed("timeout") {
		d, err := fs.GetDuration("timeout")
		if err != nil {
			return etcd.Config{}, fmt.Errorf("read --timeout: %w", err)
		}
		if d <= 0 {
			return etcd.Config{}, inputErrorf("invalid --timeout %v: want a positive duration", d)
		}
		cfg.DialTimeout, cfg.RequestTimeout = d, d
	}
	if fs.Lookup("ttl") != nil && fs.Changed("ttl") {
		d, err := fs.GetDuration("ttl")
		if err != nil {
			return etcd.Config{}, fmt.Errorf("read --ttl: %w", err)
		}
		if err := etcd.CheckTTL(d); err != nil {
			return etcd.Config{}, inputErrorf("invalid --ttl %v: %v", d, err)
		}
		cfg.TTL = d
	}
	if flagErr != nil {
		return etcd.Config{}, fmt.Errorf("read flags: %w", flagErr)
	}
	// The commands print the endpoints and the prefix, and bound their
	// requests by DialTimeout (requestContext).
	return cfg.WithDefaults(), nil
}

// newBackend loads the connection configuration from the flags in fs and
// the environment, lets adjust change it, and dials etcd, which waits for
// etcd to answer only when credentials are given. etcd.New reads the
// certificate files and rejects what does not hold together (TLS settings
// with an http:// endpoint, endpoints that mix TLS and plain text), naming
// the field or the endpoint; it warns about a password sent without TLS
// (see logger).
func (a *app) newBackend(ctx context.Context, fs *pflag.FlagSet, adjust func(*etcd.Config)) (*etcd.Backend, etcd.Config, error) {
	cfg, err := loadConfig(fs)
	if err != nil {
		return nil, cfg, err
	}
	fileFlags := map[string]string{ // etcd.FieldError.Field -> where it came from
		"CACertFile": sourceOf(fs, "cacert", etcd.EnvCACert),
		"CertFile":   sourceOf(fs, "cert", etcd.EnvCert) + "/" + sourceOf(fs, "key", etcd.EnvKey),
	}
	cfg.Logger = a.logger(fs)
	if adjust != nil {
		adjust(&cfg)
	}
	b, err := etcd.New(cfg)
	var fe *etcd.FieldError
	switch {
	case errors.As(err, &fe) && fileFlags[fe.Field] != "":
		return nil, cfg, inputErrorf("invalid %s: %s", fileFlags[fe.Field], fe.Reason)
	case errors.Is(err, etcd.ErrInvalidConfig):
		return nil, cfg, inputError{err}
	case errors.Is(err, context.DeadlineExceeded):
		// With credentials, the client logs in while connecting.
		return nil, cfg, etcdError(ctx, cfg, err)
	case err != nil:
		return nil, cfg, err
	}
	return b, cfg, nil
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

// warningSink prints, as a "roster: warning:" line, the etcd backend's
// warning that the password is sent in clear; the backend decides when it
// applies. Other log lines are shown only with --verbose.
type warningSink struct{ a *app }

func (s warningSink) Accept(_ string, level hclog.Level, msg string, args ...any) {
	if level < hclog.Warn || msg != etcd.PasswordInClearMessage {
		return
	}
	var eps []string
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "endpoints" {
			eps, _ = args[i+1].([]string)
		}
	}
	s.a.warnf("the password is sent to etcd in clear: %s does not use TLS (give https:// endpoints, or --cacert)",
		strings.Join(eps, ","))
}

// logger returns the backend's logger: everything on stderr with
// --verbose, and otherwise only the password warning (warningSink).
func (a *app) logger(fs *pflag.FlagSet) hclog.Logger {
	if v, _ := fs.GetBool("verbose"); v {
		return hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.Debug, Output: a.stderr})
	}
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})
	l.RegisterSink(warningSink{a})
	return l
}

// etcdError describes a failed etcd request: a deadline names the endpoints
// and the timeout, so that an unreachable etcd is plain to see. parent is
// the command's context: when it ended (Ctrl+C), the error says so.
func etcdError(parent context.Context, cfg etcd.Config, err error) error {
	eps := strings.Join(cfg.Endpoints, ",")
	switch {
	case parent.Err() != nil:
		return errors.New("interrupted")
	case errors.Is(err, context.DeadlineExceeded):
		// What timed out adds nothing: the command says what it was doing.
		return fmt.Errorf("etcd at %s did not answer within %v: %w", eps, cfg.DialTimeout, context.DeadlineExceeded)
	default:
		return fmt.Errorf("etcd at %s: %w", eps, err)
	}
}

// requestContext bounds one command's etcd requests by the timeout.
func requestContext(parent context.Context, cfg etcd.Config) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, cfg.DialTimeout)
}
