package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/metrics"
	"github.com/roster-sd/roster/retry"
)

// A jitter-free policy, so the memory backend's attempts come every few
// milliseconds.
var fastRetry = retry.Policy{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

func newMemory(t *testing.T, store *memory.Store, opts ...memory.Option) *memory.Backend {
	t.Helper()
	b, err := memory.New(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func register(t *testing.T, r discovery.Registrar, ins ...discovery.Instance) {
	t.Helper()
	for _, in := range ins {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		err := r.Register(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("Register(%v): %v", in.Key(), err)
		}
	}
}

// The registration metrics through the memory backend's simulated faults:
// an expiry (lost, restored), an outage (retrying, back), a conflict, a
// deregistration and Close, with exact values at every step.
func TestRegistrationMetricsMemory(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	const restoreDelay = 50 * time.Millisecond
	b := newMemory(t, store, memory.WithRetry(fastRetry), memory.WithRestoreDelay(restoreDelay))
	col := metrics.New(b)
	defer col.Close()
	url := endpoint(t, col)

	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	register(t, b, p1, p2)
	waitMetrics(t, url, "two registered", append(registrations("payments", "registered", 2),
		want{"roster_backend_connected", nil, 1},
		want{"roster_backend_retry_attempts_total", nil, 0},
		want{"roster_registration_recovery_seconds", []string{"service", "payments"}, 0})...)

	// A simulated expiry: lost, then restored after the delay.
	store.Expire("payments", "p-1")
	f := waitMetrics(t, url, "one recovery after the expiry", append(registrations("payments", "registered", 2),
		want{"roster_registration_transitions_total", []string{"service", "payments", "state", "lost", "cause", "removed"}, 1},
		want{"roster_registration_recovery_seconds", []string{"service", "payments"}, 1})...)
	h := f.metric("roster_registration_recovery_seconds", "service", "payments").GetHistogram()
	if got := time.Duration(h.GetSampleSum() * float64(time.Second)); got < restoreDelay || got > restoreDelay+time.Second {
		t.Errorf("recovery after the expiry took %v; want the restore delay %v, plus little", got, restoreDelay)
	}
	// The buckets resolve it: none below the restore delay (0.05 s) holds
	// it, and every bucket from the observed duration up does. (The
	// duration itself is the machine's: a busy one takes longer than the
	// delay, so the test does not pick the bucket.)
	sum := h.GetSampleSum()
	for _, bk := range h.GetBucket() {
		wantCount := uint64(0)
		if bk.GetUpperBound() >= sum {
			wantCount = 1
		}
		if bk.GetUpperBound() < restoreDelay.Seconds() && bk.GetCumulativeCount() != 0 {
			t.Errorf("bucket le=%v has %d; want 0: the recovery cannot beat the restore delay", bk.GetUpperBound(), bk.GetCumulativeCount())
		}
		if bk.GetCumulativeCount() != wantCount {
			t.Errorf("bucket le=%v has %d; want %d for one recovery of %.3fs", bk.GetUpperBound(), bk.GetCumulativeCount(), wantCount, sum)
		}
	}

	// An outage: both retrying, attempts counted, then back.
	store.SetAvailable(false)
	waitMetrics(t, url, "both retrying", append(registrations("payments", "retrying", 2),
		want{"roster_backend_connected", nil, 0},
		want{"roster_registration_transitions_total", []string{"service", "payments", "state", "retrying", "cause", "unavailable"}, 2})...)
	testAttempts := func(f families) float64 { return f.value("roster_backend_retry_attempts_total") }
	testwait.Until(t, waitFor, "three failed attempts", func() bool { return testAttempts(scrape(t, url)) >= 3 })
	store.SetAvailable(true)
	f = waitMetrics(t, url, "both back", append(registrations("payments", "registered", 2),
		want{"roster_backend_connected", nil, 1},
		want{"roster_registration_recovery_seconds", []string{"service", "payments"}, 3})...)
	attempts := testAttempts(f)
	if got := testAttempts(scrape(t, url)); got != attempts {
		t.Errorf("retry attempts went on after the outage: %v, then %v", attempts, got)
	}
	if got := f.value("roster_registration_transitions_total", "service", "payments", "state", "retrying", "cause", "unavailable"); got != 2 {
		t.Errorf("retrying transitions = %v; want 2, one per registration (attempts are not transitions)", got)
	}

	// Another backend takes p-2: a conflict, with its cause.
	other := newMemory(t, store)
	register(t, other, p2)
	waitMetrics(t, url, "p-2 in conflict", append(registrations("payments", "registered", 1, "conflict", 1),
		want{"roster_registration_transitions_total", []string{"service", "payments", "state", "conflict", "cause", "conflict"}, 1})...)
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, "p-2 taken back", append(registrations("payments", "registered", 2),
		want{"roster_registration_recovery_seconds", []string{"service", "payments"}, 4})...)

	// Deregister and Close: the service stays, with zeros.
	if err := b.Deregister(context.Background(), p2); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, "one left", registrations("payments", "registered", 1)...)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitMetrics(t, url, "none left", registrations("payments")...)
}

func TestCause(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{nil, metrics.CauseNone},
		{memory.ErrUnavailable, metrics.CauseUnavailable},
		{memory.ErrExpired, metrics.CauseRemoved},
		{discovery.ErrConflict, metrics.CauseConflict},
		{context.DeadlineExceeded, metrics.CauseTimeout},
		{context.Canceled, metrics.CauseCanceled},
		{discovery.ErrClosed, metrics.CauseOther},
	}
	for _, c := range cases {
		if got := metrics.Cause(c.err); got != c.want {
			t.Errorf("Cause(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
