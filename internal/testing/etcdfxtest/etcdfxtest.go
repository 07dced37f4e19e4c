// Package etcdfxtest holds what the tests of fxmodule and of its etcd
// module (etcdfx) share: a real etcd shared by a package's tests, the two
// configs an etcd-only fx application supplies, and small helpers. It
// imports testing, so only _test.go files may import it.
package etcdfxtest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

// Setup is the module's Config and the etcd backend's, as an etcd-only
// application supplies them.
type Setup struct {
	fxmodule.Config
	Etcd etcd.Config
}

// Options are the etcd backend's module and both configs, for fx.New.
func (s Setup) Options() fx.Option {
	return fx.Options(etcdfx.Module, fx.Supply(s.Config, s.Etcd))
}

// Retry is a fast retry policy for tests.
func Retry() retry.Policy {
	return retry.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
}

// Config configures the modules for srv, under Prefix(t, root).
func Config(t *testing.T, srv *etcdtest.Server, root string) Setup {
	return Setup{
		Etcd: etcd.Config{
			Endpoints: srv.Endpoints(),
			Prefix:    Prefix(t, root),
			TTL:       5 * time.Second,
		},
		Config: fxmodule.Config{
			Timeout: 2 * time.Second,
			Retry:   Retry(),
		},
	}
}

// Prefix is an etcd prefix of the test's own, under root ("/fxmodule-test").
func Prefix(t *testing.T, root string) string {
	r := strings.NewReplacer("/", "_", " ", "_")
	return root + "/" + r.Replace(t.Name())
}

// Ctx is a context that ends after d or with the test.
func Ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Payments is the instance the tests register.
func Payments() discovery.Instance {
	return discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"}
}

// Logger routes logs to t.Log until the test ends, under the name "app".
func Logger(t testing.TB) hclog.Logger { return testlog.New(t).ResetNamed("app") }

// Shared is one etcd for the tests of a package that never stop it; each
// of them writes under a prefix of its own. Main closes it.
type Shared struct {
	once sync.Once
	srv  *etcdtest.Server
	err  error
}

// Etcd starts the shared etcd on first use and returns it.
func (s *Shared) Etcd(t *testing.T) *etcdtest.Server {
	t.Helper()
	s.once.Do(func() { s.srv, s.err = etcdtest.New() })
	if s.err != nil {
		t.Fatalf("start etcd: %v", s.err)
	}
	return s.srv
}

// Main is a package's TestMain: it runs the tests, closes s's etcd, and
// checks with goleak that no goroutine is left.
func Main(m *testing.M, s *Shared) {
	goleak.VerifyTestMain(closeShared{m, s})
}

type closeShared struct {
	m *testing.M
	s *Shared
}

func (c closeShared) Run() int {
	code := c.m.Run()
	if c.s.srv != nil {
		_ = c.s.srv.Close()
	}
	return code
}

// DeadEndpoint returns a loopback address nothing listens on.
func DeadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
