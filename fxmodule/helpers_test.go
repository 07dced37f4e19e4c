package fxmodule_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

// testRetry is a fast retry policy for tests.
func testRetry() retry.Policy {
	return retry.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
}

// etcdSetup is the module's Config and the etcd backend's, as an
// etcd-only application supplies them.
type etcdSetup struct {
	fxmodule.Config
	Etcd etcd.Config
}

// options are the etcd backend's module and both configs, for fx.New.
func (s etcdSetup) options() fx.Option {
	return fx.Options(etcdfx.Module, fx.Supply(s.Config, s.Etcd))
}

// etcdConfig configures the module for srv, under a prefix of the test's
// own.
func etcdConfig(t *testing.T, srv *etcdtest.Server) etcdSetup {
	return etcdSetup{
		Etcd: etcd.Config{
			Endpoints: srv.Endpoints(),
			Prefix:    testPrefix(t),
			TTL:       5 * time.Second,
		},
		Config: fxmodule.Config{
			Timeout: 2 * time.Second,
			Retry:   testRetry(),
		},
	}
}

func testPrefix(t *testing.T) string {
	r := strings.NewReplacer("/", "_", " ", "_")
	return "/fxmodule-test/" + r.Replace(t.Name())
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var payments = discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"}

// testLogger routes logs to t.Log until the test ends, under the name
// "app".
func testLogger(t testing.TB) hclog.Logger { return testlog.New(t).ResetNamed("app") }

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
