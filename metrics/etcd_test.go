package metrics_test

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/metrics"
	"github.com/roster-sd/roster/retry"
)

// newEtcd returns an etcd backend with test timings: a 2 s lease and a
// retry policy scaled down from 1 s..30 s to 100 ms..1 s.
func newEtcd(t *testing.T, endpoints []string) *etcd.Backend {
	t.Helper()
	return newEtcdLogged(t, endpoints, testlog.New(t))
}

func newEtcdLogged(t testing.TB, endpoints []string, log hclog.Logger) *etcd.Backend {
	t.Helper()
	b, err := etcd.New(etcd.Config{
		Endpoints:      endpoints,
		TTL:            2 * time.Second,
		Retry:          retry.Policy{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2},
		RequestTimeout: 300 * time.Millisecond,
		ReconnectDelay: 200 * time.Millisecond,
		Logger:         log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A scripted outage of a real etcd: the registration retries (attempts
// counted), recovers once (one observation of the recovery histogram), and
// the gauges come back to registered.
func TestRegistrationMetricsEtcdOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	b := newEtcd(t, srv.Endpoints())
	col := metrics.New(b)
	defer col.Close()
	url := endpoint(t, col)

	register(t, b, discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"})
	f := waitMetrics(t, url, "registered, connected, no attempt", append(registrations("payments", "registered", 1),
		want{"roster_backend_connected", nil, 1},
		want{"roster_backend_retry_attempts_total", nil, 0},
		want{"roster_registration_recovery_seconds", []string{"service", "payments"}, 0})...)
	if ttl := f.value("roster_lease_remaining_seconds"); ttl <= 0 || ttl > 2 {
		t.Errorf("roster_lease_remaining_seconds = %v; want in (0, 2]", ttl)
	}
	testwait.Until(t, waitFor, "a keep-alive round trip", func() bool {
		return scrape(t, url).value("roster_lease_keepalive_rtt_seconds") > 0
	})

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// The lease runs out on the client's clock (no keep-alive answers),
	// and grants fail: at least two attempts.
	waitMetrics(t, url, "retrying", append(registrations("payments", "retrying", 1),
		want{"roster_backend_connected", nil, 0},
		want{"roster_lease_remaining_seconds", nil, 0},
		want{"roster_registration_transitions_total", []string{"service", "payments", "state", "retrying", "cause", "unavailable"}, 1})...)
	testwait.Until(t, waitFor, "two failed attempts", func() bool {
		return scrape(t, url).value("roster_backend_retry_attempts_total") >= 2
	})

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	f = waitMetrics(t, url, "registered again, one recovery", append(registrations("payments", "registered", 1),
		want{"roster_backend_connected", nil, 1},
		want{"roster_registration_recovery_seconds", []string{"service", "payments"}, 1},
		want{"roster_registration_transitions_total", []string{"service", "payments", "state", "retrying", "cause", "unavailable"}, 1})...)
	attempts := f.value("roster_backend_retry_attempts_total")
	if attempts < 2 {
		t.Errorf("retry attempts = %v; want at least 2", attempts)
	}
	if f.metric("roster_registration_transitions_total", "service", "payments", "state", "lost", "cause", "removed") != nil {
		t.Errorf("a lost transition was counted; etcd kept the lease through its restart")
	}
	h := f.metric("roster_registration_recovery_seconds", "service", "payments").GetHistogram()
	t.Logf("recovery took %.3fs over %v attempts", h.GetSampleSum(), attempts)
	if h.GetSampleSum() <= 0 || h.GetSampleSum() > 30 {
		t.Errorf("recovery took %vs; want the outage's length", h.GetSampleSum())
	}
	testwait.Until(t, waitFor, "the lease renewed", func() bool {
		return scrape(t, url).value("roster_lease_remaining_seconds") > 0
	})
	if got := scrape(t, url).value("roster_backend_retry_attempts_total"); got != attempts {
		t.Errorf("retry attempts went on after the recovery: %v, then %v", attempts, got)
	}
}
