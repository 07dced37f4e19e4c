package fxmodule_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/memoryfx"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/statushttp"
)

// probe returns the status code h answers.
func probe(h http.Handler) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	return rec.Code
}

// gauge returns the value of the roster_registrations series of service
// and state in reg, or -1.
func gauge(t *testing.T, reg prometheus.Gatherer, service, state string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "roster_registrations" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labels(m)["service"] == service && labels(m)["state"] == state {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// With a prometheus.Registerer in the graph the module registers roster's
// collector on it, and unregisters it at stop; the status handler follows
// the application's registration.
func TestModuleMetricsAndStatusHandler(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	var h *statushttp.Handler
	app := fxtest.New(t,
		fxmodule.Module,
		memoryfx.Module,
		fx.Provide(func() prometheus.Registerer { return reg }),
		fxmodule.Instance(payments),
		fx.Populate(&h),
	)
	if got := probe(h); got != http.StatusServiceUnavailable {
		t.Errorf("status before start = %d, want 503", got)
	}
	app.RequireStart()
	testwait.Until(t, 10*time.Second, "the status endpoint ready", func() bool { return probe(h) == http.StatusOK })
	if got := gauge(t, reg, "payments", "registered"); got != 1 {
		t.Errorf(`roster_registrations{service="payments",state="registered"} = %v, want 1`, got)
	}
	app.RequireStop()
	if got := probe(h); got != http.StatusServiceUnavailable {
		t.Errorf("status after stop = %d, want 503", got)
	}
	if got := gauge(t, reg, "payments", "registered"); got != -1 {
		t.Errorf("roster_registrations still gathered after stop: %v", got)
	}
}

// Without a Registerer the module registers nothing, on no registry.
func TestModuleWithoutRegistererRegistersNoMetrics(t *testing.T) {
	t.Parallel()
	app := fxtest.New(t,
		fxmodule.Module,
		memoryfx.Module,
		fxmodule.Instance(payments),
	)
	app.RequireStart()
	if got := gauge(t, prometheus.DefaultGatherer, "payments", "registered"); got != -1 {
		t.Errorf("roster_registrations on the global registry: %v", got)
	}
	app.RequireStop()

	b, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if col, err := fxmodule.RegisterMetrics(fxmodule.MetricsParams{Backend: b}); col != nil || err != nil {
		t.Errorf("RegisterMetrics without a Registerer = %v, %v; want nil, nil", col, err)
	}
}

// A backend of the application's own that reports no status: the module
// still starts with a Registerer, and only asking for the handler fails.
func TestModuleMetricsWithStatuslessBackend(t *testing.T) {
	t.Parallel()
	type statusless struct{ discovery.Backend }
	custom, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	useIt := fxmodule.UseBackend(func() statusless { return statusless{custom} })
	reg := prometheus.NewPedanticRegistry()
	app := fxtest.New(t, fxmodule.Module, useIt, fx.Provide(func() prometheus.Registerer { return reg }),
		fxmodule.Instance(payments))
	app.RequireStart()
	app.RequireStop()

	var h *statushttp.Handler
	err = fx.New(fxmodule.Module, useIt, fx.Populate(&h), fx.NopLogger).Err()
	if !errors.Is(err, fxmodule.ErrNoStatus) {
		t.Errorf("fx.New asking for the status handler: %v; want ErrNoStatus", err)
	}
}

// sample returns the value of the counter or gauge name whose labels
// include want (name, value pairs) in reg, or -1.
func sample(t *testing.T, reg prometheus.Gatherer, name string, want ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(want); i += 2 {
				if labels(m)[want[i]] != want[i+1] {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// The registration's health check reports every check to the collector
// the module registers: the application's registry counts the failures
// and passes against a real HTTP server, beside the instance's condition.
func TestModuleExportsHealthChecks(t *testing.T) {
	t.Parallel()
	up, url := healthServer(t)
	reg := prometheus.NewPedanticRegistry()
	app := fxtest.New(t,
		fxmodule.Module,
		memoryfx.Module,
		fx.Supply(fxmodule.Config{Health: fxmodule.HealthConfig{HTTP: url,
			Probe: health.Config{Period: 10 * time.Millisecond}}}),
		fx.Provide(func() prometheus.Registerer { return reg }),
		fxmodule.Instance(payments),
	)
	app.RequireStart()
	defer app.RequireStop()
	testwait.Until(t, 10*time.Second, "failed checks counted, payments not ready", func() bool {
		return sample(t, reg, "roster_health_checks_total", "outcome", "fail") >= 1 &&
			sample(t, reg, "roster_instances", "service", "payments", "condition", "not_ready") == 1
	})
	if got := sample(t, reg, "roster_health_checks_total", "outcome", "pass"); got != 0 {
		t.Errorf(`roster_health_checks_total{outcome="pass"} = %v before /healthz passes; want 0`, got)
	}
	up.Store(true)
	testwait.Until(t, 10*time.Second, "passed checks counted, payments serving", func() bool {
		return sample(t, reg, "roster_health_checks_total", "outcome", "pass") >= 1 &&
			sample(t, reg, "roster_instances", "service", "payments", "condition", "serving") == 1
	})
}
