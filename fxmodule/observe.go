package fxmodule

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/metrics"
	"github.com/roster-sd/roster/statushttp"
)

// NewStatusHandler returns the status endpoint of the backend's
// registrations (see package statushttp for what it answers and its probe
// rule): mount it on the application's mux, at the path its readiness or
// startup probe reads. Like NewStatusReporter, it fails with an error
// wrapping ErrNoStatus for a backend of the application's own that does
// not report statuses; fx calls it only for an application that asks for
// a *statushttp.Handler.
func NewStatusHandler(b discovery.Backend) (*statushttp.Handler, error) {
	s, err := NewStatusReporter(b)
	if err != nil {
		return nil, err
	}
	return statushttp.New(s), nil
}

// MetricsParams are the inputs of RegisterMetrics.
type MetricsParams struct {
	fx.In

	// Lifecycle receives the hook that unregisters and closes the
	// collector. Outside fx it may be nil; the caller then does both.
	Lifecycle fx.Lifecycle
	// Backend is the backend whose registrations are exported.
	Backend discovery.Backend
	// Registerer is the application's Prometheus registry. Without one,
	// RegisterMetrics does nothing: the module never registers on the
	// global registry unless the application provides
	// prometheus.DefaultRegisterer itself.
	Registerer prometheus.Registerer `optional:"true"`
}

// RegisterMetrics registers a metrics.Collector of the backend on the
// application's prometheus.Registerer, when the application provides one,
// and returns it (nil without a Registerer). A backend that does not
// report statuses gets a collector without registration metrics. The
// collector is unregistered and closed at stop, before the backend is
// closed. Module provides its result, and the registration's health
// check reports every check to it (RegistrationParams.Metrics). A registry holds roster's metrics once: two
// fx applications in one process need a registry each (as the replicas
// of examples/fxapp have), or registering fails, and with it fx.New.
func RegisterMetrics(p MetricsParams) (*metrics.Collector, error) {
	if p.Registerer == nil {
		return nil, nil
	}
	status, _ := p.Backend.(discovery.StatusReporter)
	col := metrics.New(status)
	if err := p.Registerer.Register(col); err != nil {
		col.Close()
		return nil, fmt.Errorf("fxmodule: register roster's metrics: %w", err)
	}
	if p.Lifecycle != nil {
		p.Lifecycle.Append(fx.StopHook(func(context.Context) error {
			p.Registerer.Unregister(col)
			return col.Close()
		}))
	}
	return col, nil
}
