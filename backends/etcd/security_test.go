package etcd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

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
