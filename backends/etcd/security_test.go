package etcd_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	const user, password = "roster", "s3cret-pw"
	srv := etcdtest.Start(t, etcdtest.WithTLS(), etcdtest.WithAuth(user, password))
	secure := func() etcd.Config {
		cfg := testConfig(t, srv.Endpoints())
		cfg.TLS = srv.TLSConfig()
		cfg.Username, cfg.Password = user, password
		return cfg
	}

	t.Run("right credentials", func(t *testing.T) {
		b := newBackend(t, secure())
		register(t, b, instance("payments", "p-1"))
		got, err := b.Resolve(context.Background(), "payments")
		if err != nil || len(got) != 1 {
			t.Errorf("Resolve = %v, %v; want the instance", got, err)
		}
		if err := b.Deregister(context.Background(), instance("payments", "p-1")); err != nil {
			t.Errorf("Deregister: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		cfg := secure()
		cfg.Password = "wrong-pw"
		b, err := etcd.New(cfg)
		if err == nil {
			b.Close()
		}
		if !errors.Is(err, rpctypes.ErrAuthFailed) {
			t.Errorf("New = %v; want an error wrapping rpctypes.ErrAuthFailed", err)
		}
		if err != nil && (strings.Contains(err.Error(), "wrong-pw") || !strings.Contains(err.Error(), srv.Endpoints()[0])) {
			t.Errorf("error %q should name the endpoint and never the password", err)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		cfg := secure()
		tlsCfg := srv.TLSConfig().Clone()
		tlsCfg.Certificates = nil
		cfg.TLS = tlsCfg
		cfg.DialTimeout = time.Second
		b, err := etcd.New(cfg)
		if err == nil {
			b.Close()
		}
		// With a username the client logs in while it is created, so the
		// refused handshake surfaces there.
		if err == nil || !strings.Contains(err.Error(), srv.Endpoints()[0]) {
			t.Errorf("New without a client certificate = %v; want an error naming the endpoint", err)
		}
		t.Logf("error without a client certificate: %v", err)
	})

	t.Run("no TLS", func(t *testing.T) {
		cfg := secure()
		cfg.TLS = nil
		cfg.DialTimeout = time.Second
		b, err := etcd.New(cfg)
		if err == nil {
			b.Close()
		}
		if err == nil || !strings.Contains(err.Error(), srv.Endpoints()[0]) {
			t.Errorf("New over plain text to a TLS server = %v; want an error naming the endpoint", err)
		}
	})

	t.Run("no TLS, no credentials", func(t *testing.T) {
		// Without a username nothing is sent while the client is created:
		// the first Register fails, and leaves nothing behind.
		cfg := testConfig(t, srv.Endpoints())
		cfg.DialTimeout = time.Second
		b := newBackend(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := b.Register(ctx, instance("payments", "p-3")); err == nil {
			t.Errorf("Register over plain text to a TLS server succeeded")
		}
		if _, err := b.Status("payments", "p-3"); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Status = %v; want ErrNotRegistered after a failed Register", err)
		}
	})
}

// TestTLSMustMatchEndpointSchemes: the etcd client takes TLS from the
// first endpoint's scheme for every endpoint and ignores Config.TLS for
// http://, so a Config whose schemes contradict TLS or each other would
// connect in plain text (sending any password in clear). New rejects it
// with ErrInvalidConfig naming the endpoint, before writing anything to
// etcd, here a plain-text etcd that such a Config would have reached.
func TestTLSMustMatchEndpointSchemes(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	host := srv.Endpoints()[0]
	anyTLS := &tls.Config{MinVersion: tls.VersionTLS12}
	cases := []struct {
		name      string
		endpoints []string
		tls       *tls.Config
		password  string
		want      string // what the error says, naming the endpoint
	}{
		{"TLS with http", []string{"http://" + host}, anyTLS, "",
			`Endpoints[0] "http://` + host + `" is a plain-text http:// endpoint but TLS is set`},
		{"TLS and a password with http", []string{"http://" + host}, anyTLS, "s3cret-pw",
			`Endpoints[0] "http://` + host + `" is a plain-text http:// endpoint but TLS is set`},
		{"TLS with HTTP in capitals", []string{"HTTP://" + host}, anyTLS, "",
			`Endpoints[0] "HTTP://` + host + `" is a plain-text http:// endpoint but TLS is set`},
		{"TLS with http after host:port", []string{host, "http://" + host}, anyTLS, "",
			`Endpoints[1] "http://` + host + `" is a plain-text http:// endpoint but TLS is set`},
		{"TLS with unix", []string{"unix:///run/etcd.sock"}, anyTLS, "",
			`Endpoints[0] "unix:///run/etcd.sock" is a plain-text unix:// endpoint but TLS is set; use unixs://`},
		{"http then https", []string{"http://" + host, "https://" + host}, nil, "s3cret-pw",
			`Endpoints[1] "https://` + host + `" asks for TLS but Endpoints[0] "http://` + host + `" does not`},
		{"https then http, with TLS", []string{"https://" + host, "http://" + host}, anyTLS, "",
			`Endpoints[0] "https://` + host + `" asks for TLS but Endpoints[1] "http://` + host + `" does not`},
		{"host:port then https, without TLS", []string{host, "https://" + host}, nil, "",
			`Endpoints[1] "https://` + host + `" asks for TLS but Endpoints[0] "` + host + `" does not`},
		{"unixs and unix", []string{"unixs:///run/etcd.sock", "unix:///run/etcd.sock"}, nil, "",
			`Endpoints[0] "unixs:///run/etcd.sock" asks for TLS but Endpoints[1] "unix:///run/etcd.sock" does not`},
	}
	before, err := cli.Get(context.Background(), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, c.endpoints)
			cfg.TLS = c.tls
			if c.password != "" {
				cfg.Username, cfg.Password = "root", c.password
			}
			cfg.DialTimeout = time.Second
			b, err := etcd.New(cfg)
			if err == nil {
				// What the old code did: a plain-text connection that
				// works, and writes.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				regErr := b.Register(ctx, instance("payments", "p-1"))
				cancel()
				b.Close()
				t.Fatalf("New accepted it (Register then: %v); want ErrInvalidConfig naming the endpoint", regErr)
			}
			if !errors.Is(err, etcd.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New = %v; want ErrInvalidConfig saying %s", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
	after, err := cli.Get(context.Background(), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Errorf("etcd revision went from %d to %d: something was written", before.Header.Revision, after.Header.Revision)
	}

	// Consistent configurations are accepted: an https:// endpoint without
	// TLS gets the system's roots from the etcd client.
	for _, c := range []struct {
		name      string
		endpoints []string
		tls       *tls.Config
	}{
		{"host:port with TLS", []string{host, host}, anyTLS},
		{"https with TLS", []string{"https://" + host, host}, anyTLS},
		{"https without TLS", []string{"https://" + host, "https://" + host}, nil},
		{"unixs with TLS", []string{"unixs:///run/etcd.sock"}, anyTLS},
		{"http without TLS", []string{"http://" + host, host}, nil},
		{"unix without TLS", []string{"unix:///run/etcd.sock", "http://" + host}, nil},
	} {
		cfg := testConfig(t, c.endpoints)
		cfg.TLS = c.tls
		b, err := etcd.New(cfg)
		if err != nil {
			t.Errorf("%s: New = %v; want a Backend", c.name, err)
			continue
		}
		if err := b.Close(); err != nil {
			t.Errorf("%s: Close: %v", c.name, err)
		}
	}
}
