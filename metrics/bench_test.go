package metrics_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/metrics"
)

// collectorVariants run a benchmark without and with a Collector following
// the backend (registered on a registry, as in an application).
func collectorVariants(b *testing.B, run func(b *testing.B, attach func(discovery.StatusReporter, ...metrics.Option))) {
	b.Run("without", func(b *testing.B) {
		run(b, func(discovery.StatusReporter, ...metrics.Option) {})
	})
	b.Run("collector", func(b *testing.B) {
		run(b, func(s discovery.StatusReporter, opts ...metrics.Option) {
			col := metrics.New(s, opts...)
			b.Cleanup(func() { col.Close() })
			prometheus.NewRegistry().MustRegister(col)
		})
	})
}

// BenchmarkRegister registers and deregisters an instance: three status
// changes per iteration, each delivered to the Collector's subscription.
func BenchmarkRegister(b *testing.B) {
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80", Metadata: map[string]string{"zone": "a"}}
	cycle := func(b *testing.B, r discovery.Registrar) {
		ctx := context.Background()
		for b.Loop() {
			if err := r.Register(ctx, in); err != nil {
				b.Fatal(err)
			}
			if err := r.Deregister(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) {
		collectorVariants(b, func(b *testing.B, attach func(discovery.StatusReporter, ...metrics.Option)) {
			be, err := memory.New(nil)
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			attach(be)
			cycle(b, be)
		})
	})
	b.Run("etcd", func(b *testing.B) {
		srv := etcdtest.Start(b)
		collectorVariants(b, func(b *testing.B, attach func(discovery.StatusReporter, ...metrics.Option)) {
			be := newEtcdLogged(b, srv.Endpoints(), hclog.NewNullLogger())
			attach(be)
			cycle(b, be)
		})
	})
}

// BenchmarkCachedResolve resolves a service of 10 instances from a cache:
// plain, with a Collector exporting the cache's staleness, and through
// the Collector's instrumented Resolver.
func BenchmarkCachedResolve(b *testing.B) {
	be, err := memory.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	for i := range 10 {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%02d", i), Address: fmt.Sprintf("10.0.0.%d:80", i),
			Metadata: map[string]string{"zone": "a", "version": "1.4.2"}}
		if err := be.Register(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	resolve := func(b *testing.B, r discovery.Resolver) {
		ctx := context.Background()
		if _, err := r.Resolve(ctx, "payments"); err != nil { // the first one fills the cache
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := r.Resolve(ctx, "payments"); err != nil {
				b.Fatal(err)
			}
		}
	}
	newCache := func(b *testing.B) *cache.Resolver {
		c, err := cache.New(be)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	b.Run("without", func(b *testing.B) {
		resolve(b, newCache(b))
	})
	b.Run("collector", func(b *testing.B) {
		c := newCache(b)
		col := metrics.New(be, metrics.WithCache(c))
		defer col.Close()
		prometheus.NewRegistry().MustRegister(col)
		resolve(b, c)
	})
	b.Run("instrumented", func(b *testing.B) {
		c := newCache(b)
		col := metrics.New(be, metrics.WithCache(c))
		defer col.Close()
		prometheus.NewRegistry().MustRegister(col)
		resolve(b, col.Resolver(c))
	})
}
