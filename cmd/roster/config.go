package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/roster-sd/roster/backends/etcd"
)

// The connection flags and the environment variables they read when they
// are not given on the command line. The names match the fx module's.
var connectionEnv = []struct{ flag, env string }{
	{"endpoints", "ROSTER_ENDPOINTS"},
	{"prefix", "ROSTER_PREFIX"},
	{"cacert", "ROSTER_CACERT"},
	{"cert", "ROSTER_CERT"},
	{"key", "ROSTER_KEY"},
	{"user", "ROSTER_USERNAME"},
	{"password", "ROSTER_PASSWORD"},
	{"timeout", "ROSTER_TIMEOUT"},
}

func addConnectionFlags(fs *pflag.FlagSet) {
	fs.StringSlice("endpoints", []string{etcd.DefaultEndpoint},
		"etcd endpoints, host:port or URL, comma-separated ($ROSTER_ENDPOINTS)")
	fs.String("prefix", etcd.DefaultPrefix, "key prefix of the registry ($ROSTER_PREFIX)")
	fs.String("cacert", "", "verify etcd's certificate with this CA bundle, PEM ($ROSTER_CACERT)")
	fs.String("cert", "", "client certificate file for TLS, PEM ($ROSTER_CERT)")
	fs.String("key", "", "private key file of --cert, PEM ($ROSTER_KEY)")
	fs.String("user", "", "etcd user name ($ROSTER_USERNAME)")
	fs.String("password", "", "etcd password; visible to other local users in the process list (ps): set $ROSTER_PASSWORD instead")
	fs.Duration("timeout", etcd.DefaultDialTimeout, "dial and request timeout ($ROSTER_TIMEOUT)")
	fs.BoolP("verbose", "v", false, "log the etcd backend's activity on stderr")
}

// loadConfig builds the etcd backend configuration from the connection
// flags in fs, each taken from its environment variable when it was not
// given on the command line. Invalid values give an inputError naming the
// flag or the variable. The password never appears in an error.
func loadConfig(fs *pflag.FlagSet) (etcd.Config, error) {
	from := make(map[string]string) // flag -> where its value came from
	for _, m := range connectionEnv {
		from[m.flag] = "--" + m.flag
		if fs.Changed(m.flag) {
			continue
		}
		v, ok := os.LookupEnv(m.env)
		if !ok || v == "" {
			continue
		}
		if err := fs.Lookup(m.flag).Value.Set(v); err != nil {
			if m.flag == "password" {
				return etcd.Config{}, inputErrorf("invalid %s", m.env)
			}
			return etcd.Config{}, inputErrorf("invalid %s %q: %v", m.env, v, err)
		}
		from[m.flag] = m.env
	}
	var lookupErr error
	get := func(name string) string {
		v, err := fs.GetString(name)
		if err != nil && lookupErr == nil {
			lookupErr = err // a flag addConnectionFlags did not define
		}
		return v
	}
	endpoints, err := fs.GetStringSlice("endpoints")
	if err != nil {
		return etcd.Config{}, fmt.Errorf("read --endpoints: %w", err)
	}
	timeout, err := fs.GetDuration("timeout")
	if err != nil {
		return etcd.Config{}, fmt.Errorf("read --timeout: %w", err)
	}

	var cfg etcd.Config
	for _, ep := range endpoints {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		if err := checkEndpoint(ep); err != nil {
			return etcd.Config{}, inputErrorf("invalid %s %q: %v", from["endpoints"], ep, err)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if len(cfg.Endpoints) == 0 {
		return etcd.Config{}, inputErrorf("%s has no endpoint", from["endpoints"])
	}
	if timeout <= 0 {
		return etcd.Config{}, inputErrorf("invalid %s %v: want a positive duration", from["timeout"], timeout)
	}
	cfg.DialTimeout, cfg.RequestTimeout = timeout, timeout

	cfg.Prefix = get("prefix")
	if !strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") {
		return etcd.Config{}, inputErrorf("invalid %s %q: want an absolute path without a trailing '/', such as %s",
			from["prefix"], cfg.Prefix, etcd.DefaultPrefix)
	}

	cfg.Username, cfg.Password = get("user"), get("password")
	if cfg.Password != "" && cfg.Username == "" {
		return etcd.Config{}, inputErrorf("%s is set but %s is empty", from["password"], from["user"])
	}

	cfg.TLS, err = loadTLS(get("cacert"), get("cert"), get("key"), from)
	if err != nil {
		return etcd.Config{}, err
	}
	if cfg.TLS == nil {
		for _, ep := range cfg.Endpoints {
			if ep := strings.ToLower(ep); strings.HasPrefix(ep, "https://") || strings.HasPrefix(ep, "unixs:") {
				// TLS with the system's roots, as etcdctl does.
				cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
				break
			}
		}
	}
	if lookupErr != nil {
		return etcd.Config{}, fmt.Errorf("read flags: %w", lookupErr)
	}
	return cfg, nil
}

// checkEndpoint accepts host:port and http, https, unix and unixs URLs.
func checkEndpoint(ep string) error {
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return err
		}
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" {
				return errors.New("URL has no host")
			}
		case "unix", "unixs":
		default:
			return fmt.Errorf("URL scheme %q; want http, https, unix or unixs", u.Scheme)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return errors.New("want host:port or a URL")
	}
	if host == "" || port == "" {
		return errors.New("want host:port or a URL")
	}
	return nil
}

// loadTLS builds the client TLS configuration from PEM files, or returns
// nil when none is given. from names where each setting came from.
func loadTLS(caFile, certFile, keyFile string, from map[string]string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, inputErrorf("%s: %v", from["cacert"], err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, inputErrorf("%s %s: no PEM certificate found", from["cacert"], caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile == "":
		return nil, inputErrorf("%s is set but %s is empty: a client certificate needs its key", from["cert"], from["key"])
	case certFile == "" && keyFile != "":
		return nil, inputErrorf("%s is set but %s is empty: a key needs its client certificate", from["key"], from["cert"])
	case certFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, inputErrorf("%s/%s: %v", from["cert"], from["key"], err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// newBackend loads the connection configuration from the flags in fs,
// lets adjust change it, and dials etcd, which waits for etcd to answer
// only when credentials are given. The etcd backend's Config check rejects
// TLS settings (--cacert, --cert) with an http:// endpoint, and endpoints
// that mix TLS and plain text, naming the endpoint; a password without
// TLS is allowed, with a warning.
func (a *app) newBackend(ctx context.Context, fs *pflag.FlagSet, adjust func(*etcd.Config)) (*etcd.Backend, etcd.Config, error) {
	cfg, err := loadConfig(fs)
	if err != nil {
		return nil, cfg, err
	}
	cfg.Logger = a.logger(fs)
	if adjust != nil {
		adjust(&cfg)
	}
	b, err := etcd.New(cfg)
	if errors.Is(err, etcd.ErrInvalidConfig) {
		return nil, cfg, inputError{err}
	}
	if cfg.Password != "" && cfg.TLS == nil {
		// Without TLS here no endpoint is https:// or unixs:// (loadConfig).
		a.warnf("the password is sent to etcd in clear: %s does not use TLS (give https:// endpoints, or --cacert)",
			strings.Join(cfg.Endpoints, ","))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// With credentials, the client logs in while connecting.
		return nil, cfg, etcdError(ctx, cfg, err)
	}
	if err != nil {
		return nil, cfg, err
	}
	return b, cfg, nil
}

// logger returns the backend's logger: silent unless --verbose.
func (a *app) logger(fs *pflag.FlagSet) hclog.Logger {
	if v, _ := fs.GetBool("verbose"); v {
		return hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.Debug, Output: a.stderr})
	}
	return hclog.NewNullLogger()
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
