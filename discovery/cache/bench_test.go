package cache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
)

// BenchmarkResolve compares Resolve through the cache with Resolve on the
// memory backend it caches, for a service of 10 instances. The cached
// sub-benchmarks also report "speedup", the upstream's ns/op divided by
// their own, measured in the same run. The memory backend has no network,
// so the speedup is the floor of what the cache saves over a real
// registry, where every upstream Resolve is a round trip.
func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	backend, err := memory.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	for i := range 10 {
		in := discovery.Instance{Service: service, ID: fmt.Sprintf("i-%02d", i),
			Address: fmt.Sprintf("10.0.0.%d:8080", i+1), Metadata: map[string]string{"zone": "a"}}
		if err := backend.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	c, err := cache.New(backend)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Resolve(ctx, service); err != nil {
		b.Fatal(err)
	}

	perOp := func(b *testing.B) time.Duration { return b.Elapsed() / time.Duration(b.N) }
	var upstream, upstreamParallel time.Duration
	resolve := func(b *testing.B, r discovery.Resolver) {
		for b.Loop() {
			if _, err := r.Resolve(ctx, service); err != nil {
				b.Fatal(err)
			}
		}
	}
	resolveParallel := func(b *testing.B, r discovery.Resolver) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Resolve(ctx, service); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("upstream", func(b *testing.B) {
		resolve(b, backend)
		upstream = perOp(b)
	})
	b.Run("cached", func(b *testing.B) {
		resolve(b, c)
		if d := perOp(b); d > 0 && upstream > 0 {
			b.ReportMetric(float64(upstream)/float64(d), "speedup")
		}
	})
	b.Run("upstream-parallel", func(b *testing.B) {
		resolveParallel(b, backend)
		upstreamParallel = perOp(b)
	})
	b.Run("cached-parallel", func(b *testing.B) {
		resolveParallel(b, c)
		if d := perOp(b); d > 0 && upstreamParallel > 0 {
			b.ReportMetric(float64(upstreamParallel)/float64(d), "speedup")
		}
	})
}
