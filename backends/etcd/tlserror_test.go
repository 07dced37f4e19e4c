package etcd_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// TestTLSProblemsNamed: a certificate etcd's CA did not sign, a missing
// client certificate, plain text to a TLS-only etcd and TLS to a
// plain-text one read as "context deadline exceeded" from New (which logs
// in, with credentials) and from CheckConnection: each now names the
// problem.
func TestTLSProblemsNamed(t *testing.T) {
	t.Parallel()
	secure := etcdtest.Start(t, etcdtest.WithTLS())
	plain := etcdtest.Start(t)
	cases := []struct {
		name string
		srv  *etcdtest.Server
		tls  func() *tls.Config
		want string
	}{
		{"unknown CA", secure, func() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} },
			"TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"no client certificate", secure, func() *tls.Config {
			c := secure.TLSConfig().Clone()
			c.Certificates = nil
			return c
		}, "refused the TLS connection: remote error: tls: certificate required"},
		{"plain text to TLS", secure, func() *tls.Config { return nil },
			"serves TLS only, and the connection is plain text"},
		{"TLS to plain text", plain, func() *tls.Config { return secure.TLSConfig() },
			"does not speak TLS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, c.srv.Endpoints())
			cfg.TLS = c.tls()
			cfg.DialTimeout = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := etcd.CheckConnection(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.srv.Endpoints()[0]) {
				t.Errorf("CheckConnection = %v; want it to name the endpoint and say %q", err, c.want)
			}
			cfg.Username, cfg.Password = "u", "pw-secret"
			b, err := etcd.New(cfg)
			if err == nil {
				b.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("New with credentials = %v; want it to say %q", err, c.want)
			}
		})
	}
	// A working configuration has no problem.
	cfg := testConfig(t, secure.Endpoints())
	cfg.TLS = secure.TLSConfig()
	if err := etcd.CheckConnection(context.Background(), cfg); err != nil {
		t.Errorf("CheckConnection of a working TLS configuration = %v", err)
	}
	if err := etcd.CheckConnection(context.Background(), testConfig(t, plain.Endpoints())); err != nil {
		t.Errorf("CheckConnection of a working plain-text configuration = %v", err)
	}
}
