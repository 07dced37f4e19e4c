package etcd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/envtest"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want etcd.Config
	}{
		{name: "nothing set", want: etcd.Config{}},
		{name: "empty values are unset", env: map[string]string{backends.EnvTTL: "", backends.EnvEndpoints: " "}, want: etcd.Config{}},
		{
			name: "everything",
			env: map[string]string{
				backends.EnvEndpoints: "10.0.0.1:2379, https://10.0.0.2:2379,unixs:///run/etcd.sock",
				backends.EnvPrefix:    "/tenant-a/services",
				backends.EnvTTL:       "10s",
				backends.EnvCACert:    "/etc/roster/ca.pem",
				backends.EnvCert:      "/etc/roster/client.pem",
				backends.EnvKey:       "/etc/roster/client-key.pem",
				backends.EnvUsername:  "svc",
				backends.EnvPassword:  " s3cret with spaces ",
				backends.EnvTimeout:   "1m30s",
			},
			want: etcd.Config{
				Endpoints:      []string{"10.0.0.1:2379", "https://10.0.0.2:2379", "unixs:///run/etcd.sock"},
				Prefix:         "/tenant-a/services",
				TTL:            10 * time.Second,
				CACertFile:     "/etc/roster/ca.pem",
				CertFile:       "/etc/roster/client.pem",
				KeyFile:        "/etc/roster/client-key.pem",
				Username:       "svc",
				Password:       " s3cret with spaces ",
				DialTimeout:    90 * time.Second,
				RequestTimeout: 90 * time.Second,
			},
		},
	}
	for _, tc := range cases {
		envtest.Reads(t, tc.name, etcd.ConfigFromEnv, tc.env, tc.want)
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want string // the error must contain it; every one names the variable
	}{
		{"empty endpoint", map[string]string{backends.EnvEndpoints: "a:2379,,b:2379"}, `ROSTER_ENDPOINTS "a:2379,,b:2379" has an empty endpoint at position 2`},
		{"trailing comma", map[string]string{backends.EnvEndpoints: "a:2379,"}, "ROSTER_ENDPOINTS"},
		{"unknown scheme", map[string]string{backends.EnvEndpoints: "ftp://a:2379"}, `ROSTER_ENDPOINTS endpoint "ftp://a:2379": scheme ftp://`},
		{"no port", map[string]string{backends.EnvEndpoints: "etcd"}, `ROSTER_ENDPOINTS endpoint "etcd"`},
		{"relative prefix", map[string]string{backends.EnvPrefix: "roster"}, `ROSTER_PREFIX "roster" must start with '/'`},
		{"prefix with dot dot", map[string]string{backends.EnvPrefix: "/a/../b"}, `ROSTER_PREFIX "/a/../b" has a ".." segment`},
		{"TTL not a duration", map[string]string{backends.EnvTTL: "15"}, `ROSTER_TTL is "15"`},
		{"TTL negative", map[string]string{backends.EnvTTL: "-5s"}, "ROSTER_TTL is -5s; want a positive duration"},
		{"TTL below a second", map[string]string{backends.EnvTTL: "500ms"}, "ROSTER_TTL is 500ms; want at least 1s"},
		{"TTL not whole seconds", map[string]string{backends.EnvTTL: "1500ms"}, "ROSTER_TTL is 1.5s; want a whole number of seconds"},
		{"timeout not a duration", map[string]string{backends.EnvTimeout: "soon"}, `ROSTER_TIMEOUT is "soon"`},
		{"timeout zero", map[string]string{backends.EnvTimeout: "0s"}, "ROSTER_TIMEOUT is 0s; want a positive duration"},
		{"cert without key", map[string]string{backends.EnvCert: "c.pem"}, "ROSTER_KEY is empty but ROSTER_CERT is set"},
		{"key without cert", map[string]string{backends.EnvKey: "k.pem"}, "ROSTER_CERT is empty but ROSTER_KEY is set"},
		{"password without username", map[string]string{backends.EnvPassword: "hunter2"}, "ROSTER_USERNAME is empty but ROSTER_PASSWORD is set"},
	}
	for _, tc := range cases {
		envtest.Rejects(t, tc.name, etcd.ConfigFromEnv, tc.env, etcd.ErrInvalidConfig, tc.want, "hunter2")
	}
}

// TestConfigFileErrors: New rejects bad TLS file settings and endpoints
// before dialing, naming the field or the endpoint.
func TestConfigFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  etcd.Config
		want string
	}{
		{"missing CA file", etcd.Config{CACertFile: filepath.Join(dir, "nope.pem")}, "CACertFile: open "},
		{"CA file without PEM", etcd.Config{CACertFile: notPEM}, "CACertFile: " + notPEM + " holds no PEM certificate"},
		{"cert without key", etcd.Config{CertFile: notPEM}, "CertFile is set but KeyFile is empty"},
		{"key without cert", etcd.Config{KeyFile: notPEM}, "KeyFile is set but CertFile is empty"},
		{"bad key pair", etcd.Config{CertFile: notPEM, KeyFile: notPEM}, "CertFile: tls: failed to find any PEM data"},
		{"TLS and files", etcd.Config{TLS: &tls.Config{}, CACertFile: notPEM}, "TLS and CACertFile, CertFile or KeyFile are both set"},
		{"unknown scheme", etcd.Config{Endpoints: []string{"ftp://127.0.0.1:2379"}}, `Endpoints[0] "ftp://127.0.0.1:2379": scheme ftp://`},
		{"not host:port", etcd.Config{Endpoints: []string{"127.0.0.1:2379", "etcd"}}, `Endpoints[1] "etcd": want host:port`},
		{"credentials in the URL", etcd.Config{Endpoints: []string{"https://svc:hunter2@127.0.0.1:2379"}},
			`Endpoints[0] "https://redacted@127.0.0.1:2379": has credentials in it, which etcd does not use`},
		{"credentials with a comma", etcd.Config{Endpoints: []string{"https://svc:hun,ter2@127.0.0.1:2379"}},
			`Endpoints[0] "https://redacted@127.0.0.1:2379": has credentials in it, which etcd does not use`},
		{"credentials with a slash", etcd.Config{Endpoints: []string{"http://svc:hun/ter2@127.0.0.1:2379"}},
			`Endpoints[0] "http://redacted@127.0.0.1:2379": `},
		{"credentials holding ://", etcd.Config{Endpoints: []string{"svc:hun://ter2@127.0.0.1:2379"}},
			`Endpoints[0] "redacted@127.0.0.1:2379": want host:port or a URL`},
		{"CA file with http", etcd.Config{Endpoints: []string{"http://127.0.0.1:2379"}, CACertFile: notPEM}, `Endpoints[0] "http://127.0.0.1:2379" is a plain-text http:// endpoint but TLS is set`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Logger = hclog.NewNullLogger()
			b, err := etcd.New(tc.cfg)
			if err == nil {
				b.Close()
			}
			if !errors.Is(err, etcd.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v; want ErrInvalidConfig containing %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hun")) {
				t.Errorf("New = %v: the password shows", err)
			}
			var fe *etcd.FieldError
			if isFile := strings.HasPrefix(tc.want, "CACertFile:") || strings.HasPrefix(tc.want, "CertFile:"); isFile != errors.As(err, &fe) {
				t.Errorf("New = %#v; want a *FieldError: %v", err, isFile)
			}
		})
	}
}

// TestTLSFromFiles: the PEM files given as Config fields (or through the
// ROSTER_* variables) give a working TLS connection with a client
// certificate to an etcd that requires one.
func TestTLSFromFiles(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.WithTLS())
	cfg, err := etcd.ConfigFromEnv(envtest.Lookup(map[string]string{
		backends.EnvEndpoints: srv.Endpoints()[0], backends.EnvCACert: srv.CAFile(),
		backends.EnvCert: srv.CertFile(), backends.EnvKey: srv.KeyFile(), backends.EnvTimeout: "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Prefix = "/" + t.Name()
	cfg.Logger = hclog.NewNullLogger()
	b, err := etcd.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer b.Close()
	register(t, b, instance("payments", "p-1"))
	got, err := b.Resolve(context.Background(), "payments")
	if err != nil || len(got) != 1 || got[0].ID != "p-1" {
		t.Errorf("Resolve = %v, %v; want p-1", got, err)
	}
}

// TestPasswordInClearIsAWarning: New logs one warning naming the endpoints
// and the user, never the password, when a password goes without TLS; none
// with TLS or without a password.
func TestPasswordInClearIsAWarning(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cases := []struct {
		name string
		cfg  etcd.Config
		warn bool
	}{
		{"plain text", etcd.Config{Endpoints: srv.Endpoints(), Username: "svc", Password: "s3cret-pw"}, true},
		{"no password", etcd.Config{Endpoints: srv.Endpoints()}, false},
		{"TLS", etcd.Config{Endpoints: []string{"https://" + srv.Endpoints()[0]}, Username: "svc", Password: "s3cret-pw"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "app", Output: &buf, Level: hclog.Warn, DisableTime: true})
			tc.cfg.DialTimeout = 500 * time.Millisecond
			b, err := etcd.New(tc.cfg)
			if err == nil {
				b.Close()
			}
			// Authentication is off on the server, so the login fails
			// (plain text) or the handshake does (TLS): what matters is
			// what New logged.
			want := `[WARN]  app.roster.etcd: ` + etcd.PasswordInClearMessage + `: endpoints=["` + srv.Endpoints()[0] + `"] username=svc` + "\n"
			got := buf.String()
			if tc.warn && got != want {
				t.Errorf("log %q; want %q", got, want)
			}
			if !tc.warn && got != "" {
				t.Errorf("log %q; want nothing", got)
			}
			if strings.Contains(got, "s3cret-pw") {
				t.Errorf("log %q shows the password", got)
			}
		})
	}
}

func TestPasswordInClear(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  etcd.Config
		want bool
	}{
		{"no password", etcd.Config{Endpoints: []string{"10.0.0.1:2379"}}, false},
		{"password, default endpoint", etcd.Config{Username: "u", Password: "p"}, true},
		{"password, plain endpoints", etcd.Config{Endpoints: []string{"10.0.0.1:2379", "http://10.0.0.2:2379"}, Username: "u", Password: "p"}, true},
		{"password, https", etcd.Config{Endpoints: []string{"https://10.0.0.1:2379"}, Username: "u", Password: "p"}, false},
		{"password, unixs", etcd.Config{Endpoints: []string{"unixs://etcd.sock"}, Username: "u", Password: "p"}, false},
		{"password, CA file", etcd.Config{Username: "u", Password: "p", CACertFile: "ca.pem"}, false},
		{"password, client certificate", etcd.Config{Username: "u", Password: "p", CertFile: "c.pem", KeyFile: "k.pem"}, false},
		{"password, TLS config", etcd.Config{Username: "u", Password: "p", TLS: &tls.Config{}}, false},
	}
	for _, c := range cases {
		if got := c.cfg.PasswordInClear(); got != c.want {
			t.Errorf("%s: PasswordInClear() = %v; want %v", c.name, got, c.want)
		}
	}
}
