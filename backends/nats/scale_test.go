package nats_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testwait"
)

// A thousand instances in one Backend cost no goroutine each, and their
// renewals, one write per key about every TTL/3, keep them all.
func TestThousandInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
	t.Parallel()
	const n = 1000
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.TTL = 3 * time.Second
	b := newBackend(t, cfg)
	before := runtime.NumGoroutine()
	start := time.Now()
	for i := range n {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%04d", i), Address: fmt.Sprintf("10.0.%d.%d:80", i/200, i%200+1)}
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d registrations in %v", n, time.Since(start))
	// Goroutines of other parallel tests come and go; a goroutine per
	// instance would add a thousand.
	if d := runtime.NumGoroutine() - before; d > 100 {
		t.Errorf("%d more goroutines after %d registrations; want none per instance", d, n)
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
