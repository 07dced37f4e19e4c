package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// benchConfig is testConfig without per-message logs.
func benchConfig(b *testing.B, endpoints []string) etcd.Config {
	cfg := testConfig(b, endpoints)
	cfg.Logger = nil
	return cfg
}

// BenchmarkRegister compares a Register after the first (a new instance
// under the existing lease) with a raw etcd Put of the same value under a
// lease, interleaved in the same run. Metric: register/put, the ratio of
// their mean latencies.
func BenchmarkRegister(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := srv.Client(b)
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
// in the same run. Metrics: recovery-ms, raw-put-ms and recovery/raw-put.
func BenchmarkRecovery(b *testing.B) {
	for _, down := range []time.Duration{3 * time.Second, 10 * time.Second} {
		b.Run(fmt.Sprintf("outage=%v", down), func(b *testing.B) {
			srv := etcdtest.Start(b)
			cfg := benchConfig(b, srv.Endpoints())
			cfg.Retry = retry.Default() // production backoff: 1 s doubling to 30 s
			backend := newBackend(b, cfg)
			states := recordStates(b, backend)
			register(b, backend, instance("bench", "p-1"))
			raw, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var recovery, rawPut time.Duration
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
				recovery += time.Since(back)
				rawPut += <-putDone
			}
			n := float64(b.N)
			b.ReportMetric(float64(recovery.Milliseconds())/n, "recovery-ms")
			b.ReportMetric(float64(rawPut.Milliseconds())/n, "raw-put-ms")
			b.ReportMetric(float64(recovery)/float64(rawPut), "recovery/raw-put")
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
