package fxmodule_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/etcdfxtest"
	"github.com/roster-sd/roster/retry"
)

// testRetry is a fast retry policy for tests.
func testRetry() retry.Policy { return etcdfxtest.Retry() }

// etcdSetup is the module's Config and the etcd backend's, as an
// etcd-only application supplies them.
type etcdSetup = etcdfxtest.Setup

// etcdConfig configures the modules for srv, under a prefix of the test's
// own.
func etcdConfig(t *testing.T, srv *etcdtest.Server) etcdSetup {
	return etcdfxtest.Config(t, srv, "/fxmodule-test")
}

func ctxFor(t *testing.T, d time.Duration) context.Context { return etcdfxtest.Ctx(t, d) }

var payments = etcdfxtest.Payments()

// testLogger routes logs to t.Log until the test ends, under the name
// "app".
func testLogger(t testing.TB) hclog.Logger { return etcdfxtest.Logger(t) }

// waitState reads sub until key reaches want, and returns that status.
func waitState(t *testing.T, sub discovery.StatusSubscription, key discovery.Key, want discovery.State, d time.Duration) discovery.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var seen []string
	for {
		st, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s to be %v: %v (saw %v)", key, want, err, seen)
		}
		if st.Instance.Key() != key {
			continue
		}
		seen = append(seen, st.State.String())
		if st.State == want {
			return st
		}
	}
}

// healthServer is a real HTTP server whose /healthz answers 503
// "warming up" until the returned flag is set, then 200; closed at the
// end of the test. It returns the URL of /healthz.
func healthServer(t *testing.T) (*atomic.Bool, string) {
	var up atomic.Bool
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !up.Load() {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(hs.Close)
	return &up, hs.URL + "/healthz"
}

// watch returns a watcher of service on r, stopped at the end of the
// test, and the context that bounds reading it.
func watch(t *testing.T, r discovery.Resolver, service string) (discovery.Watcher, context.Context) {
	t.Helper()
	ctx := ctxFor(t, 20*time.Second)
	w, err := r.Watch(ctx, service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w, ctx
}
