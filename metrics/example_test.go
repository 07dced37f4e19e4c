package metrics_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/metrics"
)

// A Collector on the application's own registry, gathered once.
func Example() {
	backend, err := memory.New(nil)
	if err != nil {
		panic(err)
	}
	defer backend.Close()
	col := metrics.New(backend)
	defer col.Close()
	reg := prometheus.NewRegistry() // the application's, never the global one
	reg.MustRegister(col)

	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	if err := backend.Register(context.Background(), in); err != nil {
		panic(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range fams {
		if f.GetName() != "roster_registrations" && f.GetName() != "roster_backend_connected" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += fmt.Sprintf(" %s=%s", l.GetName(), l.GetValue())
			}
			fmt.Printf("%s%s %v\n", f.GetName(), labels, m.GetGauge().GetValue())
		}
	}
	// Output:
	// roster_backend_connected 1
	// roster_registrations service=payments state=conflict 0
	// roster_registrations service=payments state=lost 0
	// roster_registrations service=payments state=registered 1
	// roster_registrations service=payments state=registering 0
	// roster_registrations service=payments state=retrying 0
}

// A client that resolves through a cache: the Collector exports the
// cache's staleness and, through the wrapper, every Resolve and Watch.
func ExampleCollector_Resolver() {
	backend, err := memory.New(nil)
	if err != nil {
		panic(err)
	}
	defer backend.Close()
	cached, err := cache.New(backend)
	if err != nil {
		panic(err)
	}
	defer cached.Close()
	col := metrics.New(nil, metrics.WithCache(cached)) // nil: this process registers nothing
	defer col.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	mux := http.NewServeMux() // the application's
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	var resolver discovery.Resolver = col.Resolver(cached)
	set, err := resolver.Resolve(context.Background(), "payments")
	fmt.Println(len(set), err)
	// Output: 0 <nil>
}
