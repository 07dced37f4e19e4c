package metrics_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/metrics"
)

// TestHealthCheckMetrics: a health.Registrar reporting to the Collector
// (health.WithObserver(col.ObserveCheck)) exports every check, read from
// a real registry's /metrics: roster_health_checks_total by outcome (a
// failure, a timeout, then passes) and roster_health_check_duration_seconds,
// whose count is the checks' and whose sum includes the timed-out one;
// beside roster_instances by condition. Before the first check, no
// roster_health_* series exists.
func TestHealthCheckMetrics(t *testing.T) {
	t.Parallel()
	b := newMemory(t, memory.NewStore())
	col := metrics.New(b)
	defer col.Close()
	url := endpoint(t, col)
	for name := range scrape(t, url) {
		if name == "roster_health_checks_total" || name == "roster_health_check_duration_seconds" {
			t.Errorf("%s exported before any check", name)
		}
	}

	const timeout = 50 * time.Millisecond
	var n atomic.Int64
	check := health.CheckFunc(func(ctx context.Context) error {
		switch n.Add(1) {
		case 1:
			return errors.New("database unreachable")
		case 2:
			<-ctx.Done() // outlives the timeout
			return ctx.Err()
		}
		return nil
	})
	gate, err := health.New(b, check, health.Config{Period: 10 * time.Millisecond, Timeout: timeout},
		health.WithObserver(col.ObserveCheck))
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	register(t, gate, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"})

	outcome := func(f families, o string) float64 { return f.value("roster_health_checks_total", "outcome", o) }
	var f families
	testwait.Until(t, waitFor, "a failure, a timeout and two passes counted, p-1 serving", func() bool {
		f = scrape(t, url)
		return outcome(f, "fail") == 1 && outcome(f, "timeout") == 1 && outcome(f, "pass") >= 2 &&
			f.value("roster_instances", "service", "payments", "condition", "serving") == 1
	})
	if err := gate.Close(); err != nil { // no check runs after this
		t.Fatal(err)
	}
	f = scrape(t, url)
	pass, fail, timedOut := outcome(f, "pass"), outcome(f, "fail"), outcome(f, "timeout")
	if fail != 1 || timedOut != 1 || pass < 2 {
		t.Errorf("outcomes: pass %v, fail %v, timeout %v; want ≥2, 1, 1", pass, fail, timedOut)
	}
	// A check that Close cut short is not an outcome, and not counted.
	if ran := float64(n.Load()); pass+fail+timedOut != ran && pass+fail+timedOut != ran-1 {
		t.Errorf("outcomes add up to %v; the check ran %v times, the last maybe cut short by Close", pass+fail+timedOut, ran)
	}
	h := f.metric("roster_health_check_duration_seconds").GetHistogram()
	if got := float64(h.GetSampleCount()); got != pass+fail+timedOut {
		t.Errorf("duration histogram counts %v checks; want %v", got, pass+fail+timedOut)
	}
	if h.GetSampleSum() < timeout.Seconds() {
		t.Errorf("durations add up to %vs; want at least the timed-out check's %v", h.GetSampleSum(), timeout)
	}
	if got := len(f["roster_health_checks_total"].GetMetric()); got != 3 {
		t.Errorf("roster_health_checks_total has %d series; want 3 (pass, fail, timeout)", got)
	}
}
