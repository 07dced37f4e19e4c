package etcdfx_test

import (
	"context"
	"net"
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
	"github.com/roster-sd/roster/internal/testing/testcert"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

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

// etcdConfig configures the modules for srv, under a prefix of the test's
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
			Retry:   retry.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		},
	}
}

func testPrefix(t *testing.T) string {
	r := strings.NewReplacer("/", "_", " ", "_")
	return "/etcdfx-test/" + r.Replace(t.Name())
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

// writeCACert writes a valid CA file of the test's own.
func writeCACert(t *testing.T) string { return testcert.WriteCA(t) }

// deadEndpoint returns a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}
