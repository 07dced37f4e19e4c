package nats_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// scaleTestsEnv turns on the tests that assert throughput or a memory
// budget: what they measure depends on the machine being otherwise idle,
// so they do not run by default (nor in CI's -race runs on shared
// machines). Run them with ROSTER_SCALE_TESTS=1 go test ./backends/nats/.
const scaleTestsEnv = "ROSTER_SCALE_TESTS"

// scaleTest skips t unless scaleTestsEnv is 1, and in -short mode.
func scaleTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	if os.Getenv(scaleTestsEnv) != "1" {
		t.Skipf("a throughput or memory budget test: set %s=1 to run it on an idle machine", scaleTestsEnv)
	}
}

// A thousand instances in one Backend cost no goroutine each and a few
// hundred bytes of heap each, and their renewals, one write per key about
// every TTL/3, keep them all. Not parallel: it counts the process's
// goroutines and heap, which other tests would disturb.
func TestThousandInstances(t *testing.T) {
	scaleTest(t)
	const n = 1000
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.TTL = 3 * time.Second
	cfg.Logger = hclog.NewNullLogger() // a line per registration would be measured too
	b := newBackend(t, cfg)
	before, heapBefore := runtime.NumGoroutine(), heapInUse()
	start := time.Now()
	for i := range n {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%04d", i), Address: fmt.Sprintf("10.0.%d.%d:80", i/200, i%200+1)}
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	goroutines, heap := runtime.NumGoroutine()-before, int64(heapInUse())-int64(heapBefore)
	// The heap counts the embedded server's side too (a subscription
	// and a stored message per key).
	t.Logf("%d registrations in %v: %d goroutines and %.2f MiB of heap added, the server's side included",
		n, took, goroutines, float64(heap)/(1<<20))
	if goroutines > 5 {
		t.Errorf("%d more goroutines after %d registrations; want none per instance", goroutines, n)
	}
	if heap > 4<<20 {
		t.Errorf("%.2f MiB of heap added; want at most 4 MiB, the server's side included", float64(heap)/(1<<20))
	}

	// Over one TTL, every key is renewed two to four times, and none is
	// lost.
	kv := rawKV(t, srv.URL(), "roster")
	info := func() uint64 {
		st, err := kv.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	seq0, t0 := info(), time.Now()
	testwait.Until(t, 3*cfg.TTL, "one TTL passes", func() bool { return time.Since(t0) >= cfg.TTL })
	writes := info() - seq0
	t.Logf("%d writes in %v for %d instances (TTL %v)", writes, time.Since(t0), n, cfg.TTL)
	if writes < 2*n || writes > 4*n {
		t.Errorf("%d writes in one TTL; want about 3 per instance, %d", writes, 3*n)
	}
	got, err := b.Resolve(t.Context(), "payments")
	if err != nil || len(got) != n {
		t.Fatalf("Resolve = %d instances, %v; want %d", len(got), err, n)
	}
	for _, st := range b.Statuses() {
		if st.State != discovery.StateRegistered {
			t.Fatalf("status %v; want every instance registered", st)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Renewals are pipelined: over a link with 25 ms of latency each way, one
// renewal at a time would take 200 × 50 ms = 10 s per pass, five times the
// TTL, and the keys would expire; in flight together they all stay.
func TestRenewalsOverASlowLinkKeepEveryKey(t *testing.T) {
	scaleTest(t)
	t.Parallel()
	const n = 200
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.Logger = hclog.NewNullLogger()
	b := newBackend(t, cfg)
	for i := range n {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%03d", i), Address: fmt.Sprintf("10.0.0.%d:80", i+1)}
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	kv := rawKV(t, srv.URL(), "roster")
	proxy.SetLatency(25 * time.Millisecond)
	defer proxy.SetLatency(0)
	start := time.Now()
	fewest := n
	for time.Since(start) < 2*cfg.TTL {
		// One Get per key (a listing would miss keys renewed while it
		// runs), straight to the server.
		count := 0
		for i := range n {
			_, err := kv.Get(t.Context(), fmt.Sprintf("payments.p-%03d", i))
			switch {
			case err == nil:
				count++
			case !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Fatal(err)
			}
		}
		fewest = min(fewest, count)
		time.Sleep(100 * time.Millisecond) // a poll, for 2 TTLs of real time
	}
	if fewest != n {
		t.Errorf("as few as %d of %d keys present over two TTLs with 25 ms of latency; want all of them all along", fewest, n)
	}
}

// Resolve and a watch's first set are complete while the service's keys
// are renewed: a key renewed while the watch lists the service is not
// left out (the end-of-values mark counts messages, and the renewal's
// message can come just after it).
func TestResolveDuringRenewalsIsComplete(t *testing.T) {
	scaleTest(t)
	t.Parallel()
	const n = 500
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.TTL = time.Second // 1 500 renewals a second
	cfg.Logger = hclog.NewNullLogger()
	b := newBackend(t, cfg)
	for i := range n {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%03d", i), Address: fmt.Sprintf("10.0.%d.%d:80", i/200, i%200+1)}
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	r := newBackend(t, cfg)
	resolves, short := 0, 0
	for start := time.Now(); time.Since(start) < 3*time.Second; resolves++ {
		got, err := r.Resolve(t.Context(), "payments")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			short++
		}
		if resolves%50 == 0 {
			w, err := r.Watch(t.Context(), "payments")
			if err != nil {
				t.Fatal(err)
			}
			set, err := w.Next(t.Context())
			w.Stop()
			if err != nil || len(set) != n {
				t.Errorf("a watch's first set has %d instances (%v); want %d", len(set), err, n)
			}
		}
	}
	t.Logf("%d resolves, %d short", resolves, short)
	if short != 0 {
		t.Errorf("%d of %d resolves left instances out; want none", short, resolves)
	}
}
