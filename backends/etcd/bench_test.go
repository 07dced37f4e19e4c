package etcd_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testing/benchtest"
	"github.com/roster-sd/roster/retry"
)

// benchConfig is testConfig without logs.
func benchConfig(b *testing.B, endpoints []string) etcd.Config {
	cfg := testConfig(b, endpoints)
	cfg.Logger = hclog.NewNullLogger()
	return cfg
}

// BenchmarkRegister compares a Register after the first (a new instance
// under the existing lease) with a raw etcd Put of the same value under a
// lease, interleaved in the same run. Metric: register/put, the ratio of
// their mean latencies.
func BenchmarkRegister(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := etcdtest.Client(b, srv)
	backend := newBackend(b, benchConfig(b, srv.Endpoints()))
	register(b, backend, instance("bench", "first"))
	lease, err := cli.Grant(context.Background(), 60)
	if err != nil {
		b.Fatal(err)
	}
	value := `{"service":"bench","id":"raw","address":"127.0.0.1:8080","metadata":{"zone":"a"}}`
	ctx := context.Background()
	var putTime, registerTime time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := cli.Put(ctx, fmt.Sprintf("/raw/bench/%d", i), value, clientv3.WithLease(lease.ID)); err != nil {
			b.Fatal(err)
		}
		putTime += time.Since(start)
		start = time.Now()
		if err := backend.Register(ctx, instance("bench", fmt.Sprintf("i-%d", i))); err != nil {
			b.Fatal(err)
		}
		registerTime += time.Since(start)
	}
	b.ReportMetric(float64(putTime.Nanoseconds())/float64(b.N), "put-ns/op")
	b.ReportMetric(float64(registerTime.Nanoseconds())/float64(b.N), "register-ns/op")
	b.ReportMetric(float64(registerTime)/float64(putTime), "register/put")
}

// BenchmarkRecovery stops etcd for longer than the lease TTL and measures,
// once it is back, how long the Backend takes to be registered again and
// how long a raw etcd client (default settings) takes to complete a Put,
// in the same run. Every iteration is one outage; run it with -benchtime Nx
// for N outages. Metrics: the median and the longest of each,
// recovery-p50-ms, recovery-max-ms, raw-put-p50-ms and raw-put-max-ms.
func BenchmarkRecovery(b *testing.B) {
	for _, down := range []time.Duration{3 * time.Second, 10 * time.Second} {
		b.Run(fmt.Sprintf("outage=%v", down), func(b *testing.B) {
			srv := etcdtest.Start(b)
			cfg := benchConfig(b, srv.Endpoints())
			// Production timings: backoff 1 s doubling to 30 s, reconnect
			// delay 800 ms.
			cfg.Retry, cfg.ReconnectDelay, cfg.RequestTimeout = retry.Default(), 0, 0
			backend := newBackend(b, cfg)
			states := recordStates(b, backend)
			register(b, backend, instance("bench", "p-1"))
			raw, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var recovery, rawPut []time.Duration
			b.ResetTimer()
			for b.Loop() {
				if _, err := raw.Put(context.Background(), "/raw/warm", "x"); err != nil {
					b.Fatal(err)
				}
				if err := srv.Stop(); err != nil {
					b.Fatal(err)
				}
				stopped := time.Now()
				states.waitState(b, discovery.StateRetrying, cfg.TTL+waitFor)
				time.Sleep(down - time.Since(stopped))
				if err := srv.Restart(); err != nil {
					b.Fatal(err)
				}
				back := time.Now()
				putDone := make(chan time.Duration)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
					defer cancel()
					_, err := raw.Put(ctx, "/raw/after", "x")
					if err != nil {
						b.Error(err)
					}
					putDone <- time.Since(back)
				}()
				states.waitState(b, discovery.StateRegistered, 3*time.Minute)
				recovery = append(recovery, time.Since(back))
				rawPut = append(rawPut, <-putDone)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			slices.Sort(recovery)
			slices.Sort(rawPut)
			b.ReportMetric(ms(recovery[len(recovery)/2]), "recovery-p50-ms")
			b.ReportMetric(ms(recovery[len(recovery)-1]), "recovery-max-ms")
			b.ReportMetric(ms(rawPut[len(rawPut)/2]), "raw-put-p50-ms")
			b.ReportMetric(ms(rawPut[len(rawPut)-1]), "raw-put-max-ms")
		})
	}
}

// BenchmarkKeepAliveTraffic counts the keep-alive requests etcd serves for
// a Backend holding 1 and 1000 instances over the same window. Metrics:
// keepalives/s for each and the ratio between them.
func BenchmarkKeepAliveTraffic(b *testing.B) {
	srv := etcdtest.Start(b)
	rate := func(n int) float64 {
		cfg := benchConfig(b, srv.Endpoints())
		cfg.Prefix = fmt.Sprintf("/bench-%d", n)
		cfg.TTL = 3 * time.Second
		backend, err := etcd.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		registerMany(b, backend, n)
		before := serverMetric(b, "etcd_debugging_lease_renewed_total", "", "")
		const window = 6 * time.Second
		time.Sleep(window)
		return (serverMetric(b, "etcd_debugging_lease_renewed_total", "", "") - before) / window.Seconds()
	}
	var one, thousand float64
	for b.Loop() {
		one += rate(1)
		thousand += rate(1000)
	}
	b.ReportMetric(one/float64(b.N), "keepalives/s(1)")
	b.ReportMetric(thousand/float64(b.N), "keepalives/s(1000)")
	b.ReportMetric(thousand/one, "ratio")
}

// BenchmarkPropagation measures how long a change takes to reach a Watcher
// of another Backend, against a raw etcd Put (or Delete) reaching a raw etcd
// watch, interleaved in the same run, on a service of 10 instances. Each
// side's watcher runs on its own goroutine and stamps the moment it sees a
// change, so the times are taken both from the start of the write and from
// the moment it returned. From the return, the figure can be below zero: a
// watcher may see a change before the write's own response arrives.
// Metrics: propagation/raw-watch, the ratio of the times from the start;
// after-return-ns/op and raw-after-return-ns/op, the mean times from the
// return; seen-before-return and raw-seen-before-return, the share of
// changes a watcher saw before the write returned.
func BenchmarkPropagation(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := etcdtest.Client(b, srv)
	writer := newBackend(b, benchConfig(b, srv.Endpoints()))
	reader := newBackend(b, benchConfig(b, srv.Endpoints()))
	for i := range 10 {
		register(b, writer, instance("bench", fmt.Sprintf("i-%d", i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := reader.Watch(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	if _, err := w.Next(ctx); err != nil {
		b.Fatal(err)
	}
	rosterSeen := benchtest.Sets(ctx, w)
	rawSeen := make(chan benchtest.Seen, 1)
	raw := cli.Watch(ctx, "/raw/bench/", clientv3.WithPrefix())
	go func() {
		for resp := range raw {
			for _, ev := range resp.Events { // none: a progress notice or the end
				size := 0
				if ev.Type == clientv3.EventTypePut {
					size = 1
				}
				select {
				case rawSeen <- benchtest.Seen{At: time.Now(), Size: size}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	moving := instance("bench", "moving")
	benchtest.Propagation(ctx, b, 10,
		func(ctx context.Context, add bool) error {
			if add {
				_, err := cli.Put(ctx, "/raw/bench/moving", "x")
				return err
			}
			_, err := cli.Delete(ctx, "/raw/bench/moving")
			return err
		}, rawSeen,
		func(ctx context.Context, add bool) error {
			if add {
				return writer.Register(ctx, moving)
			}
			return writer.Deregister(ctx, moving)
		}, rosterSeen)
}

// BenchmarkCachedResolve compares Resolve through a cache.Resolver over the
// etcd Backend with a raw etcd range read of the same service (10
// instances), in the same run, on two topologies: one member, the cheapest
// read etcd can serve (no network, no quorum), and three members, the
// smallest production cluster, where the leader confirms its leadership
// with a quorum of its peers before it answers a linearizable read. Each runs b.N range reads, then
// b.N cached Resolves (each a deep copy the caller owns), then b.N Views (the
// shared set, no copy). Metrics: range-read/cached and range-read/view, the
// speed-ups.
func BenchmarkCachedResolve(b *testing.B) {
	b.Run("members=1", func(b *testing.B) {
		srv := etcdtest.Start(b)
		benchCachedResolve(b, etcdtest.Client(b, srv), srv.Endpoints())
	})
	b.Run("members=3", func(b *testing.B) {
		c := etcdtest.StartCluster(b, 3)
		if _, err := c.Leader(); err != nil {
			b.Fatal(err)
		}
		benchCachedResolve(b, etcdtest.Client(b, c), c.Endpoints())
	})
}

func benchCachedResolve(b *testing.B, cli *clientv3.Client, endpoints []string) {
	backend := newBackend(b, benchConfig(b, endpoints))
	for i := range 10 {
		register(b, backend, instance("bench", fmt.Sprintf("i-%d", i)))
	}
	cached, err := cache.New(backend)
	if err != nil {
		b.Fatal(err)
	}
	defer cached.Close()
	ctx := context.Background()
	if _, err := cached.Resolve(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	// Each phase starts with a collection, so that it does not pay for the
	// garbage of the one before.
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := cli.Get(ctx, backend.Prefix()+"/bench/", clientv3.WithPrefix()); err != nil {
			b.Fatal(err)
		}
	}
	rangeRead := time.Since(start)
	runtime.GC()
	start = time.Now()
	for range b.N {
		set, err := cached.Resolve(ctx, "bench")
		if err != nil || len(set) != 10 {
			b.Fatal(err, len(set))
		}
	}
	fromCache := time.Since(start)
	var picked string
	runtime.GC()
	start = time.Now()
	for i := range b.N {
		if err := cached.View(ctx, "bench", func(set []discovery.Instance) { picked = set[i%len(set)].Address }); err != nil {
			b.Fatal(err)
		}
	}
	viewed := time.Since(start)
	if picked == "" {
		b.Fatal("View saw no instance")
	}
	b.ReportMetric(float64(fromCache.Nanoseconds())/float64(b.N), "cached-ns/op")
	b.ReportMetric(float64(viewed.Nanoseconds())/float64(b.N), "view-ns/op")
	b.ReportMetric(float64(rangeRead.Nanoseconds())/float64(b.N), "range-read-ns/op")
	b.ReportMetric(float64(rangeRead)/float64(fromCache), "range-read/cached")
	b.ReportMetric(float64(rangeRead)/float64(viewed), "range-read/view")
}

// BenchmarkWatchMemory measures the heap a Backend holds per instance of a
// watched service of 1000 instances, against the size of those instances'
// etcd key-values. Metrics: bytes/instance and bytes/kv-byte.
func BenchmarkWatchMemory(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := etcdtest.Client(b, srv)
	writer := newBackend(b, benchConfig(b, srv.Endpoints()))
	const n = 1000
	for i := range n {
		putRaw(b, cli, writer, instance("bench", fmt.Sprintf("i-%04d", i)))
	}
	resp, err := cli.Get(context.Background(), writer.Prefix()+"/bench/", clientv3.WithPrefix())
	if err != nil {
		b.Fatal(err)
	}
	var kvBytes int
	for _, kv := range resp.Kvs {
		kvBytes += len(kv.Key) + len(kv.Value)
	}
	var perInstance float64
	for b.Loop() {
		reader := newBackend(b, benchConfig(b, srv.Endpoints()))
		if _, err := reader.Resolve(context.Background(), "warm-up"); err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		w, err := reader.Watch(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		if set, err := w.Next(context.Background()); err != nil || len(set) != n {
			b.Fatal(err, len(set))
		}
		perInstance += float64(int64(heapInUse())-int64(before)) / n
		w.Stop()
		reader.Close()
	}
	perInstance /= float64(b.N)
	b.ReportMetric(perInstance, "bytes/instance")
	b.ReportMetric(perInstance/(float64(kvBytes)/n), "bytes/kv-byte")
}
