package fxmodule_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/fxmodule/fxall"
	"github.com/roster-sd/roster/fxmodule/memoryfx"
	"github.com/roster-sd/roster/fxmodule/natsfx"
	"github.com/roster-sd/roster/internal/testing/etcdfxtest"
	"github.com/roster-sd/roster/retry"
)

// An instance is in etcd once the application has started, and leaves it
// at once when the application stops: its key is deleted and the
// backend's lease revoked, without waiting for the TTL.
func TestEtcdRegisteredAfterStartGoneAfterStop(t *testing.T) {
	t.Parallel()
	srv := sharedEtcd(t)
	cli := etcdtest.Client(t, srv)
	cfg := etcdConfig(t, srv)
	var (
		reg     *fxmodule.Registration
		backend discovery.Backend
	)
	app := fxtest.New(t,
		fxmodule.Module,
		cfg.Options(),
		fx.Provide(func() hclog.Logger { return testLogger(t) }),
		fxmodule.Instance(payments),
		fx.Populate(&reg, &backend),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	if _, ok := backend.(*etcd.Backend); !ok {
		t.Fatalf("backend is %T; want *etcd.Backend", backend)
	}

	key := cfg.Etcd.Prefix + "/payments/p-1"
	resp, err := cli.Get(ctxFor(t, 5*time.Second), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get(%s) after start = %v, %v; want the instance", key, resp, err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)

	app.RequireStop()
	resp, err = cli.Get(ctxFor(t, 5*time.Second), key)
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("Get(%s) after stop = %v, %v; want nothing", key, resp.Kvs, err)
	}
	ttl, err := cli.TimeToLive(ctxFor(t, 5*time.Second), lease)
	if err != nil {
		t.Fatalf("TimeToLive: %v", err)
	}
	if ttl.TTL != -1 {
		t.Errorf("lease %x has TTL %d after stop; want -1 (revoked)", lease, ttl.TTL)
	}
}

// The application starts while etcd is down; the registration reports
// retrying and completes once etcd is back.
func TestEtcdDownAtStart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := etcdConfig(t, srv)
	var (
		reg    *fxmodule.Registration
		status discovery.StatusReporter
	)
	app := fxtest.New(t,
		fxmodule.Module,
		cfg.Options(),
		fx.Provide(func() hclog.Logger { return testLogger(t) }),
		fxmodule.Instance(payments),
		fx.Populate(&reg, &status),
	)
	sub := status.SubscribeStatus()
	defer sub.Stop()
	began := time.Now()
	app.RequireStart()
	if took := time.Since(began); took >= cfg.Timeout {
		t.Errorf("start took %v with etcd down; want it not to wait for etcd (Timeout %v)", took, cfg.Timeout)
	}

	st := waitState(t, sub, payments.Key(), discovery.StateRetrying, 15*time.Second)
	if st.Attempt < 1 || st.RetryIn <= 0 || st.Err == nil {
		t.Errorf("retrying status = %+v; want an attempt, a delay and a cause", st)
	}
	ctx := ctxFor(t, 50*time.Millisecond)
	if err := reg.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Registration.Wait while etcd is down = %v; want it to wait", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := reg.Wait(ctxFor(t, 15*time.Second)); err != nil {
		t.Fatalf("Registration.Wait after etcd came back: %v", err)
	}
	waitState(t, sub, payments.Key(), discovery.StateRegistered, 5*time.Second)
	resp, err := cli.Get(ctxFor(t, 5*time.Second), cfg.Etcd.Prefix+"/payments/p-1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get after etcd came back = %v, %v; want the instance", resp, err)
	}
	app.RequireStop()
}

// With RequireRegistration, an unreachable etcd makes start fail with an
// error that says which instance and why.
func TestRequireRegistrationFailsWhenEtcdDown(t *testing.T) {
	t.Parallel()
	cfg := etcdSetup{
		Etcd: etcd.Config{Endpoints: []string{deadEndpoint(t)}},
		Config: fxmodule.Config{
			Timeout:             500 * time.Millisecond,
			Retry:               testRetry(),
			RequireRegistration: true,
		},
	}
	app := fxtest.New(t,
		fxmodule.Module,
		cfg.Options(),
		fx.Provide(func() hclog.Logger { return testLogger(t) }),
		fxmodule.Instance(payments),
	)
	err := app.Start(ctxFor(t, 10*time.Second))
	if err == nil {
		app.RequireStop()
		t.Fatal("Start succeeded with etcd down and RequireRegistration set")
	}
	for _, want := range []string{"RequireRegistration", "payments/p-1", "127.0.0.1:8080", "deadline exceeded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error %q does not mention %q", err, want)
		}
	}
	// fx rolled the started hooks back: the backend is closed (goleak
	// checks that its goroutines are gone).
}

// With RequireRegistration and etcd up, the instance is registered before
// start returns.
func TestRequireRegistrationRegistersBeforeStartReturns(t *testing.T) {
	t.Parallel()
	srv := sharedEtcd(t)
	cfg := etcdConfig(t, srv)
	cfg.RequireRegistration = true
	app := fxtest.New(t,
		fxmodule.Module,
		cfg.Options(),
		fx.Provide(func() hclog.Logger { return testLogger(t) }),
		fxmodule.Instance(payments),
	)
	app.RequireStart()
	key := cfg.Etcd.Prefix + "/payments/p-1"
	resp, err := etcdtest.Client(t, srv).Get(ctxFor(t, 5*time.Second), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("Get(%s) right after start = %v, %v; want the instance", key, resp, err)
	}
	app.RequireStop()
}

// A backend the application provides with UseBackend is the one the
// module uses, and is not closed by the module.
func TestCustomBackendIsUsed(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	custom, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	var (
		backend discovery.Backend
		status  discovery.StatusReporter
		reg     *fxmodule.Registration
	)
	app := fxtest.New(t,
		fxmodule.Module,
		fxmodule.UseBackend(func() *memory.Backend { return custom }),
		fxmodule.Instance(payments),
		fx.Populate(&backend, &status, &reg),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	if backend != discovery.Backend(custom) || status != discovery.StatusReporter(custom) {
		t.Fatalf("module provides %T %p; want the custom backend %p", backend, backend, custom)
	}
	wantSet(t, store, "payments", payments)
	app.RequireStop()
	wantSet(t, store, "payments")
	// Still open: the application owns it.
	if err := custom.Register(context.Background(), payments); err != nil {
		t.Errorf("custom backend after stop: %v; want it still open", err)
	}
}

// wantSet checks the instances of service in store, through a handle of
// its own.
func wantSet(t *testing.T, store *memory.Store, service string, want ...discovery.Instance) {
	t.Helper()
	peek, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer peek.Close()
	got, err := peek.Resolve(context.Background(), service)
	if err != nil {
		t.Fatal(err)
	}
	if !discovery.EqualSets(got, discovery.NormalizeSet(want)) {
		t.Errorf("instances of %s = %v; want %v", service, got, want)
	}
}

// server stands for the application's server: its hooks check that the
// instance is not in the registry while it starts and stops.
type server struct {
	t      *testing.T
	store  *memory.Store
	addr   string
	events *[]string
}

func newServer(t *testing.T, store *memory.Store, events *[]string) func(fx.Lifecycle) *server {
	return func(lc fx.Lifecycle) *server {
		s := &server{t: t, store: store, addr: "127.0.0.1:9090", events: events}
		lc.Append(fx.StartStopHook(
			func() {
				*s.events = append(*s.events, "server started")
				wantSet(t, store, "web") // not registered yet
			},
			func() {
				*s.events = append(*s.events, "server stopped")
				wantSet(t, store, "web") // deregistered already
			}))
		return s
	}
}

// The instance is registered after the application's server has started
// and deregistered before it stops, whether the order comes from where
// Instance stands or from ProvideInstance's dependencies.
func TestRegistrationHookOrder(t *testing.T) {
	t.Parallel()
	web := discovery.Instance{Service: "web", ID: "w-1", Address: "127.0.0.1:9090"}
	cases := []struct {
		name string
		opts func(t *testing.T, store *memory.Store, events *[]string) fx.Option
	}{
		{"Instance after the server", func(t *testing.T, store *memory.Store, events *[]string) fx.Option {
			return fx.Options(
				fx.Provide(newServer(t, store, events)),
				fx.Invoke(func(*server) {}),
				fxmodule.Instance(web),
			)
		}},
		{"ProvideInstance before the server", func(t *testing.T, store *memory.Store, events *[]string) fx.Option {
			return fx.Options(
				fxmodule.ProvideInstance(func(s *server) discovery.Instance {
					return discovery.Instance{Service: "web", ID: "w-1", Address: s.addr}
				}),
				fx.Provide(newServer(t, store, events)),
			)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := memory.NewStore()
			var events []string
			var reg *fxmodule.Registration
			app := fxtest.New(t,
				fxmodule.Module,
				fxmodule.UseBackend(sharedMemory(store)),
				tc.opts(t, store, &events),
				fx.Populate(&reg),
			)
			app.RequireStart()
			if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatalf("Registration.Wait: %v", err)
			}
			wantSet(t, store, "web", web)
			app.RequireStop()
			if got := strings.Join(events, ", "); got != "server started, server stopped" {
				t.Errorf("events = %s", got)
			}
		})
	}
}

// sharedMemory returns a constructor of a memory backend on store, closed
// by the application's lifecycle.
func sharedMemory(store *memory.Store) func(fx.Lifecycle) (*memory.Backend, error) {
	return func(lc fx.Lifecycle) (*memory.Backend, error) {
		b, err := memory.New(store)
		if err != nil {
			return nil, err
		}
		lc.Append(fx.StopHook(b.Close))
		return b, nil
	}
}

// DrainDelay passes between deregistering and stopping the servers.
func TestDrainDelay(t *testing.T) {
	t.Parallel()
	const drain = 300 * time.Millisecond
	store := memory.NewStore()
	var events []string
	var stoppedAt time.Time
	var reg *fxmodule.Registration
	app := fxtest.New(t,
		fxmodule.Module,
		fx.Supply(fxmodule.Config{DrainDelay: drain}),
		fxmodule.UseBackend(sharedMemory(store)),
		fx.Provide(newServer(t, store, &events)),
		fx.Invoke(func(lc fx.Lifecycle, _ *server) {
			lc.Append(fx.StopHook(func() { stoppedAt = time.Now() }))
		}),
		fxmodule.Instance(discovery.Instance{Service: "web", Address: "127.0.0.1:9090"}),
		fx.Populate(&reg),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	began := time.Now()
	app.RequireStop()
	if d := stoppedAt.Sub(began); d < drain {
		t.Errorf("the server stopped %v after stop began; want at least the drain delay %v", d, drain)
	}
}

// Config{Backend: "memory"} selects a private memory backend.
func TestMemoryBackendByConfig(t *testing.T) {
	t.Parallel()
	var (
		backend  discovery.Backend
		resolver discovery.Resolver
		reg      *fxmodule.Registration
	)
	app := fxtest.New(t,
		fxmodule.Module,
		fxall.Module,
		fx.Supply(fxmodule.Config{Backend: fxmodule.BackendMemory}),
		fxmodule.Instance(payments),
		fx.Populate(&backend, &resolver, &reg),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	if _, ok := backend.(*memory.Backend); !ok {
		t.Fatalf("backend is %T; want *memory.Backend", backend)
	}
	got, err := resolver.Resolve(context.Background(), "payments")
	if err != nil || !discovery.EqualSets(got, []discovery.Instance{payments}) {
		t.Errorf("Resolve = %v, %v; want %v", got, err, payments)
	}
	app.RequireStop()
	if _, err := resolver.Resolve(context.Background(), "payments"); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Resolve after stop = %v; want ErrClosed (the module closes the backend it built)", err)
	}
}

// Without a supplied Config the module reads the environment, and a bad
// variable stops the application from being built.
func TestConfigFromEnvironment(t *testing.T) {
	t.Run("used", func(t *testing.T) {
		t.Setenv(fxmodule.EnvBackend, "memory")
		var backend discovery.Backend
		app := fxtest.New(t, fxmodule.Module, fxall.Module, fx.Populate(&backend))
		app.RequireStart().RequireStop()
		if _, ok := backend.(*memory.Backend); !ok {
			t.Errorf("backend is %T; want *memory.Backend from ROSTER_BACKEND=memory", backend)
		}
	})
	t.Run("invalid etcd variable", func(t *testing.T) {
		t.Setenv(backends.EnvTTL, "forever")
		var backend discovery.Backend
		app := fx.New(fxmodule.Module, fxall.Module, fx.Populate(&backend), fx.NopLogger)
		err := app.Err()
		if !errors.Is(err, fxmodule.ErrInvalidConfig) || !errors.Is(err, etcd.ErrInvalidConfig) || !strings.Contains(err.Error(), "ROSTER_TTL") {
			t.Errorf("fx.New error = %v; want fxmodule's and etcd's ErrInvalidConfig naming ROSTER_TTL", err)
		}
	})
	t.Run("invalid nats variable", func(t *testing.T) {
		t.Setenv(fxmodule.EnvBackend, "nats")
		t.Setenv("ROSTER_ENDPOINTS", "http://a:2379")
		var backend discovery.Backend
		app := fx.New(fxmodule.Module, fxall.Module, fx.Populate(&backend), fx.NopLogger)
		err := app.Err()
		if !errors.Is(err, fxmodule.ErrInvalidConfig) || !errors.Is(err, nats.ErrInvalidConfig) ||
			!strings.Contains(err.Error(), `ROSTER_ENDPOINTS endpoint "http://a:2379"`) {
			t.Errorf("fx.New error = %v; want fxmodule's and NATS's ErrInvalidConfig naming ROSTER_ENDPOINTS", err)
		}
	})
	t.Run("loaded once and provided", func(t *testing.T) {
		// Module loads the Config once (environment, defaults, checks)
		// and provides it as "roster.config" to the registration and the
		// backend modules, instead of each reading the environment.
		t.Setenv(fxmodule.EnvBackend, "memory")
		t.Setenv(fxmodule.EnvDrainDelay, "3s")
		var got struct {
			fx.In
			Config fxmodule.Config `name:"roster.config"`
		}
		app := fxtest.New(t, fxmodule.Module, fxall.Module, fx.Populate(&got))
		app.RequireStart().RequireStop()
		want := fxmodule.Config{Backend: "memory", DrainDelay: 3 * time.Second, Timeout: fxmodule.DefaultTimeout, Retry: retry.Default()}
		if !reflect.DeepEqual(got.Config, want) {
			t.Errorf("Config named %s = %+v; want %+v", fxmodule.ConfigName, got.Config, want)
		}
	})
}

// Invalid configs and instances fail fx.New with a clear error.
func TestInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts fx.Option
		want error
		text string
	}{
		{"unknown backend", fx.Supply(fxmodule.Config{Backend: "zookeeper"}), fxmodule.ErrInvalidConfig, "zookeeper"},
		{"negative drain delay", fx.Supply(fxmodule.Config{Backend: "memory", DrainDelay: -time.Second}), fxmodule.ErrInvalidConfig, "DrainDelay"},
		{"bad etcd prefix", fx.Supply(etcd.Config{Prefix: "/x/"}), etcd.ErrInvalidConfig, "Prefix"},
		{"missing CA file", fx.Supply(etcd.Config{CACertFile: "/nonexistent/ca.pem"}), etcd.ErrInvalidConfig, "CACertFile"},
		{"invalid instance", fx.Options(
			fx.Supply(fxmodule.Config{Backend: "memory"}),
			fxmodule.Instance(discovery.Instance{Service: "bad service", Address: "127.0.0.1:1"}),
		), discovery.ErrInvalidInstance, "Service"},
		{"instance declared twice", fx.Options(
			fx.Supply(fxmodule.Config{Backend: "memory"}),
			fxmodule.Instance(payments, discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:9"}),
		), fxmodule.ErrInvalidConfig, "payments/p-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b discovery.Backend
			err := fx.New(fxmodule.Module, fxall.Module, tc.opts, fx.Populate(&b), fx.NopLogger).Err()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("fx.New error = %v; want one wrapping %v that mentions %q", err, tc.want, tc.text)
			}
		})
	}
}

// The constructors work without fx: the Config loaded once, a backend's
// constructor, the Registration.
func TestWithoutFx(t *testing.T) {
	t.Parallel()
	cfg, err := fxmodule.LoadConfig(fxmodule.Config{Retry: testRetry()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := memoryfx.New(memoryfx.Params{Module: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Backend.Close()
	reg, err := fxmodule.NewRegistration(fxmodule.RegistrationParams{
		Registrar: res.Registrar,
		Instances: []discovery.Instance{{Service: "payments", Address: "127.0.0.1:8080"}},
		Config:    cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Resolver.Resolve(context.Background(), "payments"); len(got) != 1 || got[0].ID != "127.0.0.1-8080" {
		t.Errorf("Resolve = %v; want the instance with the ID derived from its address", got)
	}
	if err := reg.Stop(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := res.Resolver.Resolve(context.Background(), "payments"); len(got) != 0 {
		t.Errorf("Resolve after Stop = %v; want nothing", got)
	}
	if err := reg.Wait(context.Background()); err != nil {
		t.Errorf("Wait after Stop = %v; want nil (the instance was registered once)", err)
	}
	if err := reg.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
}

// During an outage of a backend whose Register fails fast, the module
// retries until the registry is back.
func TestRetriesFailingRegister(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := memory.NewStore()
		store.SetAvailable(false)
		var reg *fxmodule.Registration
		app := fxtest.New(t,
			fxmodule.Module,
			fx.Supply(fxmodule.Config{Retry: testRetry()}),
			fx.Provide(func() hclog.Logger { return testLogger(t) }),
			fxmodule.UseBackend(sharedMemory(store)),
			fxmodule.Instance(payments),
			fx.Populate(&reg),
		)
		app.RequireStart()
		// Several retries pass on the bubble's clock, each failing.
		if err := reg.Wait(ctxFor(t, 200*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait during the outage = %v; want it to wait", err)
		}
		store.SetAvailable(true)
		if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
			t.Fatalf("Wait after the outage: %v", err)
		}
		wantSet(t, store, "payments", payments)
		app.RequireStop()
	})
}

// deadEndpoint returns a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string { return etcdfxtest.DeadEndpoint(t) }

// TestDeregisterWhileRegisteringIsNotUndone: the application deregisters
// its instance while the module's background Register is still pending
// (etcd is down). That Register fails with ErrNotRegistered, which ends
// the module's registration of the instance instead of retrying it: the
// instance stays deregistered once etcd is back, for the rest of the
// application's life.
func TestDeregisterWhileRegisteringIsNotUndone(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg := etcdConfig(t, srv)
	key := cfg.Etcd.Prefix + "/payments/p-1"
	var (
		reg     *fxmodule.Registration
		backend discovery.Backend
		status  discovery.StatusReporter
	)
	app := fxtest.New(t,
		fxmodule.Module,
		cfg.Options(),
		fx.Provide(func() hclog.Logger { return testLogger(t) }),
		fxmodule.Instance(payments),
		fx.Populate(&reg, &backend, &status),
	)
	sub := status.SubscribeStatus()
	defer sub.Stop()
	app.RequireStart()
	waitState(t, sub, payments.Key(), discovery.StateRetrying, 15*time.Second) // Register is pending

	// The delete waits for etcd; the pending Register is withdrawn at once.
	deregistered := make(chan error, 1)
	go func() { deregistered <- backend.Deregister(ctxFor(t, 30*time.Second), payments) }()
	waitState(t, sub, payments.Key(), discovery.StateDeregistered, 5*time.Second)
	// The module is done with the instance, with etcd still down: its
	// registration goroutine has ended instead of registering it again.
	if err := reg.Wait(ctxFor(t, 5*time.Second)); err != nil {
		t.Errorf("Registration.Wait after the application deregistered the instance = %v; want nil at once", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-deregistered; err != nil {
		t.Errorf("Deregister = %v; want nil once etcd is back", err)
	}
	// Something else goes through the same backend once etcd is back.
	other := discovery.Instance{Service: "payments", ID: "p-2", Address: "127.0.0.1:8082"}
	if err := backend.Register(ctxFor(t, 10*time.Second), other); err != nil {
		t.Fatalf("Register(p-2): %v", err)
	}
	if st, err := status.Status("payments", "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status(p-1) = %+v, %v; want ErrNotRegistered", st, err)
	}
	if resp, err := cli.Get(ctxFor(t, 5*time.Second), key); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("Get(%s) = %v, %v; want nothing", key, resp, err)
	}
	app.RequireStop()

	// etcd's history of the prefix, up to a marker written after stop:
	// p-1 was never written, at any time.
	marker := cfg.Etcd.Prefix + "/zz-marker"
	if _, err := cli.Put(ctxFor(t, 5*time.Second), marker, "end"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var history []string
	sawMarker := false
	for resp := range cli.Watch(wctx, cfg.Etcd.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(1)) {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch the history: %v", err)
		}
		for _, ev := range resp.Events {
			history = append(history, ev.Type.String()+" "+string(ev.Kv.Key))
			if string(ev.Kv.Key) == key {
				t.Errorf("etcd has an event for p-1: %s", history[len(history)-1])
			}
			if string(ev.Kv.Key) == marker {
				sawMarker = true
				cancel()
			}
		}
	}
	if !sawMarker || !slices.Contains(history, "PUT "+cfg.Etcd.Prefix+"/payments/p-2") {
		t.Errorf("history of the prefix:\n%s\nwant p-2's put and the marker", strings.Join(history, "\n"))
	}
}

// TestBackendWithoutStatus: a custom backend that is not a
// discovery.StatusReporter is never provided to fx as a nil one: an
// application that asks for a StatusReporter fails to build with
// ErrNoStatus naming the backend's type, and one that does not ask runs.
func TestBackendWithoutStatus(t *testing.T) {
	t.Parallel()
	type statusless struct{ discovery.Backend }
	custom, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	useIt := fxmodule.UseBackend(func() statusless { return statusless{custom} })

	var status discovery.StatusReporter
	err = fx.New(fxmodule.Module, useIt, fx.Populate(&status), fx.NopLogger).Err()
	if !errors.Is(err, fxmodule.ErrNoStatus) || !strings.Contains(err.Error(), "fxmodule_test.statusless does not implement discovery.StatusReporter") {
		t.Errorf("fx.New asking for a StatusReporter: %v; want ErrNoStatus naming the type", err)
	}
	if status != nil {
		t.Errorf("StatusReporter = %v; want none", status)
	}

	var backend discovery.Backend
	app := fxtest.New(t, fxmodule.Module, useIt, fxmodule.Instance(payments), fx.Populate(&backend))
	app.RequireStart()
	if backend != (statusless{custom}) {
		t.Errorf("backend = %v; want the custom one", backend)
	}
	app.RequireStop()

	// Every backend of roster's is a StatusReporter (memory here).
	got, err := fxmodule.NewStatusReporter(custom)
	if err != nil || got != discovery.StatusReporter(custom) {
		t.Errorf("NewStatusReporter(memory) = %v, %v; want the backend", got, err)
	}
}

// A single-backend module refuses a Config (or ROSTER_BACKEND) that names
// another backend, instead of silently building its own: the error says
// which module the application is built with and what to use instead.
func TestBackendModuleRejectsAnotherBackendName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		module fx.Option
		cfg    string
		want   string
	}{
		{"etcd module, nats asked", etcdfx.Module, fxmodule.BackendNATS, `Backend (ROSTER_BACKEND) is "nats", but the application is built with etcdfx.Module`},
		{"nats module, etcd asked", natsfx.Module, fxmodule.BackendEtcd, `Backend (ROSTER_BACKEND) is "etcd", but the application is built with natsfx.Module`},
		{"memory module, nats asked", memoryfx.Module, fxmodule.BackendNATS, `is "nats", but the application is built with memoryfx.Module`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b discovery.Backend
			err := fx.New(fxmodule.Module, tc.module, fx.Supply(fxmodule.Config{Backend: tc.cfg}), fx.Populate(&b), fx.NopLogger).Err()
			if !errors.Is(err, fxmodule.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("fx.New error = %v; want ErrInvalidConfig saying %q", err, tc.want)
			}
		})
	}
	// Its own name, or none, is accepted.
	for _, name := range []string{"", fxmodule.BackendMemory} {
		var b discovery.Backend
		app := fxtest.New(t, fxmodule.Module, memoryfx.Module, fx.Supply(fxmodule.Config{Backend: name, Retry: testRetry()}), fx.Populate(&b))
		app.RequireStart().RequireStop()
	}
}
