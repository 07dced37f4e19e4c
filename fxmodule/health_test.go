package fxmodule_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/health"
)

// nextCondition reads w until the instance w-1 is in condition c, failing
// on a set without it.
func nextCondition(t *testing.T, w discovery.Watcher, c discovery.Condition) discovery.Instance {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	for {
		set, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for w-1 to be %v: %v", c, err)
		}
		if len(set) != 1 {
			t.Fatalf("waiting for w-1 to be %v, the watcher saw %+v", c, set)
		}
		if set[0].Condition == c {
			return set[0]
		}
	}
}

// TestHealthConfigGatesRegistration: Config.Health.HTTP against a real
// HTTP server: the instance is published not ready until /healthz answers
// 2xx, serving then, not ready with the check's output after a failure;
// stop drains and deregisters it, and stops the checks.
func TestHealthConfigGatesRegistration(t *testing.T) {
	t.Parallel()
	var code, hits atomic.Int64
	code.Store(http.StatusServiceUnavailable)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(int(code.Load()))
		w.Write([]byte("cache cold"))
	}))
	defer hs.Close()
	store := memory.NewStore()
	other, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w, ctx := watch(t, other, "web")
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	var reg *fxmodule.Registration
	app := fxtest.New(t,
		fxmodule.Module,
		fx.Supply(fxmodule.Config{
			DrainDelay: 200 * time.Millisecond,
			Health: fxmodule.HealthConfig{HTTP: hs.URL + "/healthz",
				Probe: health.Config{Period: 10 * time.Millisecond, FailureThreshold: 1}},
		}),
		fxmodule.UseBackend(sharedMemory(store)),
		fxmodule.Instance(discovery.Instance{Service: "web", ID: "w-1", Address: "127.0.0.1:9090", Zone: "a"}),
		fx.Populate(&reg),
	)
	app.RequireStart()
	in := nextCondition(t, w, discovery.ConditionNotReady)
	for !strings.Contains(in.Reason, "503 Service Unavailable: cache cold") {
		in = nextCondition(t, w, discovery.ConditionNotReady)
	}
	code.Store(http.StatusOK)
	if in := nextCondition(t, w, discovery.ConditionServing); in.Zone != "a" {
		t.Errorf("serving instance %+v lost its zone", in)
	}
	if res, ok := reg.HealthResult(); !ok || res.Condition != discovery.ConditionServing || res.Checks == 0 {
		t.Errorf("HealthResult() = %+v, %v; want serving after some checks", res, ok)
	}
	code.Store(http.StatusInternalServerError)
	nextCondition(t, w, discovery.ConditionNotReady)
	sets := make(chan []discovery.Instance, 2)
	go func() {
		defer close(sets)
		for range 2 {
			set, err := w.Next(ctx)
			if err != nil {
				return
			}
			sets <- set
		}
	}()
	app.RequireStop()
	if set := <-sets; len(set) != 1 || set[0].Condition != discovery.ConditionDraining {
		t.Errorf("first change at stop: %+v; want w-1 draining (the check no longer moves it)", set)
	}
	if set := <-sets; set == nil || len(set) != 0 {
		t.Errorf("second change at stop: %+v; want w-1 gone", set)
	}
	n := hits.Load()
	if res, _ := reg.HealthResult(); res.Checks == 0 {
		t.Error("no check counted")
	}
	if got := hits.Load(); got != n {
		t.Errorf("%d checks after stop; want none (goleak checks the goroutines too)", got-n)
	}
}

// TestHealthCheckFromGraph: a health.Check the application provides gates
// the registration, with Config.Health.Probe's parameters.
func TestHealthCheckFromGraph(t *testing.T) {
	t.Parallel()
	var pass atomic.Bool
	store := memory.NewStore()
	other, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w, ctx := watch(t, other, "web")
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	app := fxtest.New(t,
		fxmodule.Module,
		fx.Supply(fxmodule.Config{Health: fxmodule.HealthConfig{Probe: health.Config{Period: 10 * time.Millisecond}}}),
		fxmodule.UseBackend(sharedMemory(store)),
		fx.Provide(func() health.Check {
			return health.CheckFunc(func(context.Context) error {
				if pass.Load() {
					return nil
				}
				return errors.New("migrations running")
			})
		}),
		fxmodule.Instance(discovery.Instance{Service: "web", ID: "w-1", Address: "127.0.0.1:9090"}),
	)
	app.RequireStart()
	in := nextCondition(t, w, discovery.ConditionNotReady)
	for in.Reason != "migrations running" {
		in = nextCondition(t, w, discovery.ConditionNotReady)
	}
	pass.Store(true)
	nextCondition(t, w, discovery.ConditionServing)
	app.RequireStop()
}

func TestHealthConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		h    fxmodule.HealthConfig
		want string
	}{
		{"two checks", fxmodule.HealthConfig{HTTP: "http://x/healthz", TCP: "x:1"}, "at most one"},
		{"not a URL", fxmodule.HealthConfig{HTTP: "localhost:80"}, "Health.HTTP"},
		{"grpc without port", fxmodule.HealthConfig{GRPC: "localhost"}, "Health.GRPC"},
		{"tcp without port", fxmodule.HealthConfig{TCP: "localhost"}, "Health.TCP"},
		{"negative period", fxmodule.HealthConfig{TCP: "x:1", Probe: health.Config{Period: -time.Second}}, "Period"},
	}
	for _, tc := range cases {
		_, err := fxmodule.NewRegistration(fxmodule.RegistrationParams{
			Registrar: mustMemory(t),
			Config:    fxmodule.Config{Backend: fxmodule.BackendMemory, Health: tc.h},
		})
		if !errors.Is(err, fxmodule.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want ErrInvalidConfig naming %s", tc.name, err, tc.want)
		}
	}
}

func mustMemory(t *testing.T) *memory.Backend {
	b, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestHealthConfigFromEnv(t *testing.T) {
	t.Parallel()
	got, err := fxmodule.ConfigFromEnv(env(map[string]string{
		"ROSTER_HEALTH_GRPC": "127.0.0.1:9090", "ROSTER_HEALTH_GRPC_SERVICE": "payments",
		"ROSTER_HEALTH_PERIOD": "2s", "ROSTER_HEALTH_TIMEOUT": "500ms", "ROSTER_HEALTH_INITIAL_DELAY": "1s",
		"ROSTER_HEALTH_SUCCESS_THRESHOLD": "2", "ROSTER_HEALTH_FAILURE_THRESHOLD": "5",
	}))
	want := fxmodule.HealthConfig{GRPC: "127.0.0.1:9090", GRPCService: "payments",
		Probe: health.Config{InitialDelay: time.Second, Period: 2 * time.Second, Timeout: 500 * time.Millisecond, SuccessThreshold: 2, FailureThreshold: 5}}
	if err != nil || got.Health != want {
		t.Errorf("ConfigFromEnv: %+v, %v; want Health %+v", got.Health, err, want)
	}
	for name, bad := range map[string]string{"ROSTER_HEALTH_PERIOD": "soon", "ROSTER_HEALTH_FAILURE_THRESHOLD": "0"} {
		if _, err := fxmodule.ConfigFromEnv(env(map[string]string{name: bad})); !errors.Is(err, fxmodule.ErrInvalidConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: %v; want ErrInvalidConfig naming it", name, bad, err)
		}
	}
}
