package etcdtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// newClient returns a client for cfg closed at the end of t, or New's error.
func newClient(t *testing.T, cfg clientv3.Config) (*clientv3.Client, error) {
	t.Helper()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cli.Close() })
	return cli, nil
}

func TestTLSAndAuth(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t, etcdtest.WithTLS(), etcdtest.WithAuth("root", "secret"))
	if !strings.HasPrefix(s.ClientURL(), "https://") {
		t.Fatalf("ClientURL() = %q, want https", s.ClientURL())
	}
	for _, f := range []string{s.CAFile(), s.CertFile(), s.KeyFile()} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("PEM file: %v", err)
		}
	}
	if _, err := tls.LoadX509KeyPair(s.CertFile(), s.KeyFile()); err != nil {
		t.Fatalf("client key pair: %v", err)
	}
	cfg := s.ClientConfig()
	if cfg.TLS == nil || cfg.Username != "root" || cfg.Password != "secret" {
		t.Fatalf("ClientConfig() lacks TLS or credentials: %+v", cfg)
	}

	t.Run("right certificate and password", func(t *testing.T) {
		cli := etcdtest.Client(t, s)
		put(t, cli, "k", "v")
		mustGet(t, cli, "k", "v")
	})

	t.Run("wrong password", func(t *testing.T) {
		cfg := s.ClientConfig()
		cfg.Password = "wrong"
		cli, err := newClient(t, cfg)
		if err == nil {
			_, err = get(cli, "k", 5*time.Second)
		}
		if !errors.Is(err, rpctypes.ErrAuthFailed) {
			t.Fatalf("err = %v, want %v", err, rpctypes.ErrAuthFailed)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		cfg := s.ClientConfig()
		cfg.Username, cfg.Password = "", ""
		cli, err := newClient(t, cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if _, err := get(cli, "k", 5*time.Second); err == nil {
			t.Fatal("Get without credentials succeeded")
		} else {
			t.Logf("Get without credentials: %v", err)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		pem, err := os.ReadFile(s.CAFile())
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatal("CA file holds no certificate")
		}
		cfg := s.ClientConfig()
		cfg.TLS = &tls.Config{RootCAs: pool}
		cfg.DialTimeout = time.Second // New authenticates within it
		cli, err := newClient(t, cfg)
		if err == nil {
			_, err = get(cli, "k", 2*time.Second)
		}
		if err == nil {
			t.Fatal("Get without a client certificate succeeded")
		}
		t.Logf("without a client certificate: %v", err)
	})

	t.Run("through a proxy", func(t *testing.T) {
		p := etcdtest.StartProxy(t, s.Endpoints()[0])
		cfg := s.ClientConfig()
		cfg.Endpoints = []string{p.Endpoint()}
		cli, err := newClient(t, cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		mustGet(t, cli, "k", "v")
	})

	t.Run("auth survives restart", func(t *testing.T) {
		if err := s.Restart(); err != nil {
			t.Fatalf("Restart: %v", err)
		}
		mustGet(t, etcdtest.Client(t, s), "k", "v")
		cfg := s.ClientConfig()
		cfg.Password = "wrong"
		cli, err := newClient(t, cfg)
		if err == nil {
			_, err = get(cli, "k", 5*time.Second)
		}
		if !errors.Is(err, rpctypes.ErrAuthFailed) {
			t.Fatalf("wrong password after Restart: err = %v, want %v", err, rpctypes.ErrAuthFailed)
		}
	})
}

func TestAuthNonRootUser(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t, etcdtest.WithAuth("alice", "pw"))
	cli := etcdtest.Client(t, s)
	put(t, cli, "k", "v")

	cfg := s.ClientConfig()
	cfg.Username = "root"
	root, err := newClient(t, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mustGet(t, root, "k", "v")
}
