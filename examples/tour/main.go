package main

// README:imports
import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/discovery/grpcresolver"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/metrics"
	"github.com/roster-sd/roster/statushttp"
)

// README:end

// README:register

// register connects to etcd and registers payments/p-1 until Deregister or
// Close (which revokes the lease: the instance leaves etcd at once).
func register(ctx context.Context, endpoints []string) (*etcd.Backend, error) {
	backend, err := etcd.New(etcd.Config{Endpoints: endpoints}) // e.g. 127.0.0.1:2379
	if err != nil {
		return nil, err
	}
	err = backend.Register(ctx, discovery.Instance{
		Service:  "payments",
		ID:       "p-1", // without an ID: "10.0.0.7-8080", from the address
		Address:  "10.0.0.7:8080",
		Metadata: map[string]string{"zone": "eu-1"},
	})
	if err != nil {
		backend.Close()
		return nil, err
	}
	return backend, nil
}

// README:end

// README:resolve

// resolve prints the live instances of payments, sorted by ID.
func resolve(ctx context.Context, r discovery.Resolver, out io.Writer) error {
	instances, err := r.Resolve(ctx, "payments")
	if err != nil {
		return err
	}
	for _, in := range instances {
		fmt.Fprintln(out, in.ID, in.Address, in.Metadata["zone"])
	}
	return nil
}

// README:end

// README:watch

// watch prints the size of payments' live set, then at every change.
func watch(ctx context.Context, r discovery.Resolver, out io.Writer) error {
	w, err := r.Watch(ctx, "payments")
	if err != nil {
		return err
	}
	defer w.Stop() // the end of ctx ends the watch too, as with etcd and gRPC streams
	for {
		set, err := w.Next(ctx) // the current set first, then every change
		switch {
		case errors.Is(err, discovery.ErrUnavailable):
			continue // etcd unreachable: w keeps the last set and carries on
		case ctx.Err() != nil:
			return nil // the caller is done
		case err != nil:
			return err
		}
		fmt.Fprintf(out, "payments: %d instances\n", len(set))
	}
}

// README:end

// README:dial

// dial returns a gRPC connection balanced over payments' live instances.
func dial(r discovery.Resolver) (*grpc.ClientConn, error) {
	builder, err := grpcresolver.NewBuilder(r)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("roster:///payments",
		grpc.WithResolvers(builder),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// README:end

// README:status

// status prints the state of payments/p-1, then every change of every
// registration the backend holds, until ctx ends.
func status(ctx context.Context, backend discovery.StatusReporter, out io.Writer) error {
	st, err := backend.Status("payments", "p-1") // st.State == discovery.StateRegistered?
	if err != nil {
		return err
	}
	fmt.Fprintln(out, st)

	sub := backend.SubscribeStatus()
	defer sub.Stop()
	for {
		// registering, registered, retrying (attempt, next delay, cause),
		// lost, conflict, deregistered
		st, err := sub.Next(ctx)
		if err != nil {
			return nil // ctx ended
		}
		fmt.Fprintln(out, st)
	}
}

// README:end

// README:observe

// observe serves roster's metrics on mux at /metrics, from the
// application's own Prometheus registry (never the global one), and the
// status endpoint at /status. It returns the resolver the application
// uses, cached and counted, and a function that stops both.
func observe(backend *etcd.Backend, registry *prometheus.Registry, mux *http.ServeMux) (discovery.Resolver, func(), error) {
	cached, err := cache.New(backend) // answers from memory, kept current by a watch
	if err != nil {
		return nil, nil, err
	}
	col := metrics.New(backend, metrics.WithCache(cached)) // follows the backend's statuses until Close
	if err := registry.Register(col); err != nil {
		col.Close()
		cached.Close()
		return nil, nil, err
	}
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.Handle("/status", statushttp.New(backend)) // 200 ready / 503 not ready; JSON, HTML or text
	return col.Resolver(cached), func() { col.Close(); cached.Close() }, nil
}

// README:end

// README:fx

// newApp is an fx application (run it with newApp(cfg).Run()) whose module
// registers its instance once it has started and deregisters it first at stop.
func newApp(cfg etcd.Config, opts ...fx.Option) *fx.App {
	return fx.New(
		fx.Supply(cfg), // without a Config, etcdfx reads the ROSTER_* variables
		fxmodule.Module,
		etcdfx.Module, // links etcd's client only; fxall.Module picks by ROSTER_BACKEND
		fxmodule.Instance(discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"}),
		fx.Options(opts...),
	)
}

// README:end

// README:health

// gated registers payments/p-3 behind a health check: published not_ready
// until the check passes, serving from then on, not_ready after 3 failures.
func gated(ctx context.Context, backend discovery.Registrar, addr string) (*health.Registrar, error) {
	check := health.TCP(addr) // or health.HTTP(url), health.DialGRPC(target, ""), health.CheckFunc(f)
	gate, err := health.New(backend, check, health.Config{Period: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	err = gate.Register(ctx, discovery.Instance{Service: "payments", ID: "p-3", Address: addr})
	if err != nil {
		gate.Close() // stops the checks and deregisters; the backend stays open
		return nil, err
	}
	return gate, nil
}

// README:end
