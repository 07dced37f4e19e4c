package fxmodule_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/memoryfx"
	"github.com/roster-sd/roster/statushttp"
)

// An application that provides its Prometheus registry gets roster's
// metrics registered on it, and mounts the module's status endpoint
// beside /metrics.
func ExampleRegisterMetrics() {
	registry := prometheus.NewRegistry()
	mux := http.NewServeMux()
	var reg *fxmodule.Registration
	app := fx.New(
		fxmodule.Module,
		memoryfx.Module,
		fx.Provide(func() prometheus.Registerer { return registry }),
		fx.Invoke(func(status *statushttp.Handler) {
			mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
			mux.Handle("/status", status)
		}),
		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
		fx.Populate(&reg),
		fx.NopLogger,
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := reg.Wait(ctx); err != nil { // registered in the background
		log.Fatal(err)
	}
	probe := func() int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
		return rec.Code
	}
	fmt.Println("running:", probe())
	fams, err := registry.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			if f.GetName() == "roster_registrations" && m.GetGauge().GetValue() > 0 {
				fmt.Println(f.GetName(), m.GetLabel()[0].GetValue(), m.GetLabel()[1].GetValue(), m.GetGauge().GetValue())
			}
		}
	}
	if err := app.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped:", probe())
	// Output:
	// running: 200
	// roster_registrations payments registered 1
	// stopped: 503
}
