package etcdfx_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/internal/testing/linebuf"
)

// An etcd client the application provides is used, and not closed.
func TestAppOwnedClientIsNotClosed(t *testing.T) {
	t.Parallel()
	srv := sharedEtcd(t)
	cli, err := clientv3.New(srv.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cfg := etcdConfig(t, srv)
	// Endpoints that lead nowhere: the registration below succeeds only
	// through the application's client.
	cfg.Etcd.Endpoints = []string{"127.0.0.1:1"}
	var backend discovery.Backend
	var reg *fxmodule.Registration
	app := fxtest.New(t,
		fxmodule.Module,
		cfg.Options(), fx.Supply(cli),
		fxmodule.Instance(payments),
		fx.Populate(&backend, &reg),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	app.RequireStop()

	if _, err := cli.Put(ctxFor(t, 5*time.Second), testPrefix(t)+"/still-open", "yes"); err != nil {
		t.Fatalf("the application's client no longer works after stop: %v", err)
	}
}

// The backend and the module log under the application's logger.
func TestAppLoggerIsUsed(t *testing.T) {
	t.Parallel()
	srv := sharedEtcd(t)
	var buf linebuf.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "myapp", Output: &buf, Level: hclog.Info})
	var reg *fxmodule.Registration
	app := fxtest.New(t,
		fxmodule.Module,
		etcdConfig(t, srv).Options(),
		fx.Provide(func() hclog.Logger { return logger }),
		fxmodule.Instance(payments),
		fx.Populate(&reg),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	app.RequireStop()
	for _, want := range []string{"myapp.roster.etcd: registered", "myapp.roster.etcd: revoked lease"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log does not contain %q:\n%s", want, buf.String())
		}
	}
}

// TestTLSWithPlainTextEndpointIsRejected: a CA certificate (Etcd.CACertFile
// or ROSTER_CACERT) with an http:// endpoint asks for TLS that the etcd
// client would silently drop, connecting in plain text and sending the
// password in clear; so would a mix of http:// and https:// endpoints.
// Building the application fails with an error naming the endpoint, and
// nothing is written to etcd: here a plain-text etcd that such a
// configuration would have reached.
func TestTLSWithPlainTextEndpointIsRejected(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	host := srv.Endpoints()[0]
	ca := writeCACert(t)
	fromEnv, err := etcd.ConfigFromEnv(env(map[string]string{
		backends.EnvEndpoints: "http://" + host, backends.EnvCACert: ca,
		backends.EnvUsername: "svc", backends.EnvPassword: "s3cret-pw", backends.EnvTimeout: "2s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	plain := `Endpoints[0] "http://` + host + `" is a plain-text http:// endpoint but TLS is set`
	cases := []struct {
		name string
		cfg  etcd.Config
		want string
	}{
		{"CACertFile", etcd.Config{Endpoints: []string{"http://" + host}, CACertFile: ca}, plain},
		{"ROSTER_CACERT and a password", fromEnv, plain},
		{"http and https", etcd.Config{Endpoints: []string{"http://" + host, "https://" + host}},
			`Endpoints[1] "https://` + host + `" asks for TLS but Endpoints[0] "http://` + host + `" does not`},
	}
	before, err := cli.Get(ctxFor(t, 5*time.Second), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var reg *fxmodule.Registration
			app := fx.New(fxmodule.Module, etcdfx.Module, fx.Supply(fxmodule.Config{Timeout: 2 * time.Second}, tc.cfg),
				fxmodule.Instance(payments), fx.Populate(&reg),
				fx.Provide(func() hclog.Logger { return testLogger(t) }), fx.NopLogger)
			err := app.Err()
			if err == nil {
				ctx := ctxFor(t, 10*time.Second)
				startErr := app.Start(ctx)
				waitErr := reg.Wait(ctx)
				_ = app.Stop(ctx)
				t.Fatalf("fx.New accepted it (Start: %v, Registration.Wait: %v); want an error naming the endpoint", startErr, waitErr)
			}
			if !errors.Is(err, etcd.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("fx.New error = %v; want one wrapping etcd.ErrInvalidConfig that says %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret-pw") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
	after, err := cli.Get(ctxFor(t, 5*time.Second), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Errorf("etcd revision went from %d to %d: something was written", before.Header.Revision, after.Header.Revision)
	}
}

// TestPasswordWithoutTLSIsAWarning: a password over a plain-text
// connection is allowed (a development etcd) but logged as a warning that
// names the endpoints, never the password, by the etcd backend under the
// application's logger; with TLS there is no warning.
func TestPasswordWithoutTLSIsAWarning(t *testing.T) {
	t.Parallel()
	srv := sharedEtcd(t)
	cases := []struct {
		name string
		cfg  etcd.Config
		warn bool
	}{
		{"plain text", etcd.Config{Endpoints: srv.Endpoints(), Username: "svc", Password: "s3cret-pw"}, true},
		{"no password", etcd.Config{Endpoints: srv.Endpoints()}, false},
		{"TLS", etcd.Config{Endpoints: []string{"https://" + deadEndpoint(t)}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &linebuf.Buffer{}
			logger := hclog.New(&hclog.LoggerOptions{Name: "app", Output: logs, Level: hclog.Debug})
			res, err := etcdfx.New(etcdfx.Params{Config: tc.cfg, Module: fxmodule.Config{Timeout: 2 * time.Second}, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Backend.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			out := logs.String()
			want := `[WARN]  app.roster.etcd: the etcd password is sent in clear: the endpoints do not use TLS: endpoints=["` + srv.Endpoints()[0] + `"] username=svc`
			if got := strings.Contains(out, want); got != tc.warn {
				t.Errorf("logs:\n%s\nwant the warning %q: %v", out, want, tc.warn)
			}
			if strings.Contains(out, "s3cret-pw") {
				t.Errorf("logs reveal the password:\n%s", out)
			}
		})
	}
}
