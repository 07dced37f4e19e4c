package nats_test

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/envtest"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	envtest.Reads(t, "nothing set", nats.ConfigFromEnv, nil, nats.Config{})
	envtest.Reads(t, "everything", nats.ConfigFromEnv, map[string]string{
		backends.EnvEndpoints: "nats://a:4222, tls://b:4222,c:4222",
		backends.EnvTTL:       "30s",
		backends.EnvTimeout:   "2s",
		backends.EnvCACert:    "ca.pem",
		backends.EnvCert:      "c.pem",
		backends.EnvKey:       "k.pem",
		backends.EnvUsername:  " svc ",
		backends.EnvPassword:  " pass word ",
		backends.EnvBucket:    "fleet_1",
		backends.EnvPrefix:    "/etcd/only", // not the NATS backend's
	}, nats.Config{
		Endpoints:      []string{"nats://a:4222", "tls://b:4222", "c:4222"},
		Bucket:         "fleet_1",
		TTL:            30 * time.Second,
		DialTimeout:    2 * time.Second,
		RequestTimeout: 2 * time.Second,
		CACertFile:     "ca.pem",
		CertFile:       "c.pem",
		KeyFile:        "k.pem",
		Username:       "svc",
		Password:       " pass word ",
	})
}

func TestConfigFromEnvRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want string // the error must contain it
	}{
		{"etcd scheme", map[string]string{backends.EnvEndpoints: "http://a:2379"}, `ROSTER_ENDPOINTS endpoint "http://a:2379": scheme http://`},
		{"empty endpoint", map[string]string{backends.EnvEndpoints: "nats://a:4222,,"}, `ROSTER_ENDPOINTS "nats://a:4222,," has an empty endpoint at position 2`},
		{"no port", map[string]string{backends.EnvEndpoints: "nats"}, `ROSTER_ENDPOINTS endpoint "nats"`},
		{"TTL below a second", map[string]string{backends.EnvTTL: "500ms"}, "ROSTER_TTL is 500ms; want at least 1s"},
		{"TTL not whole seconds", map[string]string{backends.EnvTTL: "1500ms"}, "ROSTER_TTL is 1.5s; want a whole number of seconds"},
		{"timeout", map[string]string{backends.EnvTimeout: "soon"}, `ROSTER_TIMEOUT is "soon"`},
		{"bucket", map[string]string{backends.EnvBucket: "a.b"}, `ROSTER_BUCKET is "a.b"`},
		{"cert without key", map[string]string{backends.EnvCert: "c.pem"}, "ROSTER_KEY is empty but ROSTER_CERT is set"},
		{"password without user", map[string]string{backends.EnvPassword: "hunter2"}, "ROSTER_USERNAME is empty but ROSTER_PASSWORD is set"},
		{"user and token", map[string]string{backends.EnvUsername: "u", backends.EnvPassword: "hunter2", backends.EnvToken: "hunter2"},
			"ROSTER_USERNAME and ROSTER_TOKEN are all set"},
		{"token and credentials", map[string]string{backends.EnvToken: "hunter2", backends.EnvCredentials: "u.creds"},
			"ROSTER_TOKEN and ROSTER_CREDENTIALS are all set"},
		// NATS URLs may carry user:password@ or token@ before the host.
		{"endpoint with a password", map[string]string{backends.EnvEndpoints: "http://svc:hunter2@a:4222"}, "ROSTER_ENDPOINTS endpoint"},
		{"endpoint with a password and a bad port", map[string]string{backends.EnvEndpoints: "nats://svc:hunter2@a:42x2"}, "ROSTER_ENDPOINTS endpoint"},
		{"empty endpoint beside a token", map[string]string{backends.EnvEndpoints: "nats://hunter2@a:4222,"}, "has an empty endpoint at position 2"},
	}
	for _, tc := range cases {
		envtest.Rejects(t, tc.name, nats.ConfigFromEnv, tc.env, nats.ErrInvalidConfig, tc.want, "hunter2")
	}
}

func TestNewRejectsBadTLSFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  nats.Config
		want string
	}{
		{"missing CA", nats.Config{CACertFile: filepath.Join(dir, "none.pem")}, "CACertFile: open"},
		{"CA not PEM", nats.Config{CACertFile: notPEM}, "CACertFile: " + notPEM + " holds no PEM certificate"},
		{"cert without key", nats.Config{CertFile: notPEM}, "CertFile is set but KeyFile is empty"},
		{"TLS and files", nats.Config{TLS: &tls.Config{}, CACertFile: notPEM}, "TLS and CACertFile, CertFile or KeyFile are both set"},
		{"unknown scheme", nats.Config{Endpoints: []string{"http://127.0.0.1:4222"}}, `Endpoints[0] "http://127.0.0.1:4222": scheme http://`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := nats.New(tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, nats.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v; want ErrInvalidConfig containing %q", err, tc.want)
			}
		})
	}
}

// A CA bundle file is what an operator has: the Backend reads it and
// trusts the server it names.
func TestTLSFromCAFile(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithTLS())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeServerCertificate(t, srv, caFile)

	cfg := testConfig(t, srv.URL(), "roster")
	cfg.CACertFile = caFile
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	got, err := b.Resolve(t.Context(), p1.Service)
	if err != nil || len(got) != 1 || !got[0].Equal(p1) {
		t.Fatalf("Resolve over TLS = %v, %v; want [p-1]", got, err)
	}
}

// writeServerCertificate writes the self-signed certificate that srv
// presents to file, as PEM.
func writeServerCertificate(t *testing.T, srv *natstest.Server, file string) {
	t.Helper()
	// NATS speaks first in plain text (INFO), then upgrades: connect
	// through the client, which does that dance, and keep what it saw.
	cfg := srv.ClientTLSConfig()
	var der []byte
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		der = cs.PeerCertificates[0].Raw
		return nil
	}
	pcfg := testConfig(t, srv.URL(), "probe")
	pcfg.TLS = cfg
	newBackend(t, pcfg)
	if der == nil {
		t.Fatal("no certificate seen")
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// NKey authentication, as NATS users configure it: the Backend signs the
// server's challenge with the seed in NKeySeedFile; another user's seed is
// refused at once.
func TestNKeySeedFile(t *testing.T) {
	t.Parallel()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := user.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithNKeyUser(pub))
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.NKeySeedFile = writeSeed(t, user)
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	got, err := b.Resolve(t.Context(), p1.Service)
	if err != nil || len(got) != 1 || !got[0].Equal(p1) {
		t.Fatalf("Resolve with an NKey = %v, %v; want [p-1]", got, err)
	}

	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	cfg.NKeySeedFile = writeSeed(t, other)
	if b, err := nats.New(cfg); !errors.Is(err, natsgo.ErrAuthorization) {
		if err == nil {
			b.Close()
		}
		t.Fatalf("New with another user's seed = %v; want an authorization error", err)
	}
}

// Decentralized authentication (a credentials file holding a user JWT and
// its NKey seed, as nsc writes them) against a server trusting an
// operator.
func TestCredentialsFile(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithOperator())
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.CredentialsFile = srv.CredentialsFile()
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	got, err := b.Resolve(t.Context(), p1.Service)
	if err != nil || len(got) != 1 || !got[0].Equal(p1) {
		t.Fatalf("Resolve with credentials = %v, %v; want [p-1]", got, err)
	}
	// Without them the server refuses the client.
	cfg.CredentialsFile = ""
	if b, err := nats.New(cfg); !errors.Is(err, natsgo.ErrAuthorization) {
		if err == nil {
			b.Close()
		}
		t.Fatalf("New without credentials = %v; want an authorization error", err)
	}
}

// writeSeed writes kp's seed to a file only its owner may read, and
// returns its name.
func writeSeed(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(file, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// An endpoint may carry a user and password, or a token, before its host
// (nats://user:password@host:port): New quotes endpoints in its errors
// and the Backend in its logs without them.
func TestEndpointCredentialsNeverShown(t *testing.T) {
	t.Parallel()
	const secret = "hunter2"
	for _, ep := range []string{"http://svc:" + secret + "@127.0.0.1:4222", "nats://svc:" + secret + "@127.0.0.1:42x2", "nats://a:1,nats://" + secret + "@b:1"} {
		b, err := nats.New(nats.Config{Endpoints: []string{ep}})
		if err == nil {
			b.Close()
			t.Fatalf("New with endpoint %q succeeded", ep)
		}
		if !errors.Is(err, nats.ErrInvalidConfig) || !strings.Contains(err.Error(), "Endpoints[0]") || strings.Contains(err.Error(), secret) {
			t.Errorf("New = %v; want ErrInvalidConfig naming Endpoints[0] without the secret", err)
		}
	}

	cases := []struct {
		name     string
		opt      natstest.Option
		userinfo string
	}{
		{"user and password", natstest.WithUser("svc", secret), "svc:" + secret},
		{"token", natstest.WithToken(secret), secret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t, tc.opt)
			proxy := natstest.StartProxy(t, srv.Addr())
			proxy.Reject()
			var logs syncBuffer
			cfg := testConfig(t, "nats://"+tc.userinfo+"@"+proxy.Endpoint(), "roster")
			cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.MultiWriter(&logs, testlog.Writer(t)), Level: hclog.Debug})
			b := newBackend(t, cfg) // NATS cannot be reached: New logs it
			proxy.Accept()
			if err := b.Register(t.Context(), p1); err != nil {
				t.Fatal(err)
			}
			if err := proxy.DropConnections(); err != nil { // and the Backend logs the drop
				t.Fatal(err)
			}
			testwait.Until(t, 5*time.Second, "the Backend logs the drop and the reconnection", func() bool {
				l := logs.String()
				return strings.Count(l, "cannot reach NATS") >= 2 && strings.Count(l, "connection to NATS is usable") >= 2
			})
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the logs show the secret:\n%s", logs.String())
			}
		})
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
