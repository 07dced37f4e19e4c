package statushttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
	"github.com/roster-sd/roster/statushttp"
)

// report GETs the JSON report.
func report(t *testing.T, url string) (int, statushttp.Report) {
	t.Helper()
	got := get(t, http.MethodGet, url+"?format=json", "")
	var rep statushttp.Report
	if err := json.Unmarshal([]byte(got.body), &rep); err != nil {
		t.Fatalf("answer is not a report: %v\n%s", err, got.body)
	}
	return got.code, rep
}

// waitReport waits until the report's only registration is in state, and
// returns the status code and the report.
func waitReport(t *testing.T, url string, state discovery.State) (int, statushttp.Report) {
	t.Helper()
	var (
		code int
		rep  statushttp.Report
	)
	testwait.Until(t, waitFor, "the registration "+state.String(), func() bool {
		code, rep = report(t, url)
		return len(rep.Registrations) == 1 && rep.Registrations[0].State == state.String()
	})
	return code, rep
}

// The probe rule on a real etcd: a process that starts while etcd is down
// is not ready until its first registration; an outage afterwards leaves
// it ready; Close makes it unready.
func TestHandlerEtcdProbeRule(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	b, err := etcd.New(etcd.Config{
		Endpoints:      srv.Endpoints(),
		TTL:            2 * time.Second,
		Retry:          retry.Policy{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2},
		RequestTimeout: 300 * time.Millisecond,
		ReconnectDelay: 200 * time.Millisecond,
		Logger:         testlog.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := serve(t, statushttp.New(b))

	// Registering while etcd is down: held, retrying, never registered.
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"}
	registered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		registered <- b.Register(ctx, in)
	}()
	code, rep := waitReport(t, url, discovery.StateRetrying)
	r := rep.Registrations[0]
	if code != 503 || rep.Ready || rep.Reason != "payments/p-1 has not been registered yet (retrying)" ||
		r.WasRegistered || r.Attempt < 1 || r.NextRetry == nil || r.Cause == "" {
		t.Errorf("before the first registration: %d %+v %+v; want 503, not ready, retrying with attempt, next retry and cause", code, rep, r)
	}
	if rep.Backend == nil || rep.Backend.Connected {
		t.Errorf("backend facts while etcd is down = %+v; want disconnected", rep.Backend)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-registered; err != nil {
		t.Fatalf("Register: %v", err)
	}
	if code, rep := waitReport(t, url, discovery.StateRegistered); code != 200 || !rep.Ready {
		t.Errorf("registered: %d %+v; want 200, ready", code, rep)
	}

	// An outage after the first registration: retrying, still ready.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	code, rep = waitReport(t, url, discovery.StateRetrying)
	if code != 200 || !rep.Ready || !rep.Registrations[0].WasRegistered {
		t.Errorf("during an outage: %d %+v; want 200, ready", code, rep)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if code, _ := waitReport(t, url, discovery.StateRegistered); code != 200 {
		t.Errorf("after the outage: %d, want 200", code)
	}

	if err := b.Close(); err != nil && !errors.Is(err, discovery.ErrClosed) {
		t.Fatal(err)
	}
	if code, rep := report(t, url); code != 503 || rep.Ready || len(rep.Registrations) != 0 {
		t.Errorf("after Close: %d %+v; want 503, no registration", code, rep)
	}
}
