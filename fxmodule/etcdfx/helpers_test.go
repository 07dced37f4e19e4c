package etcdfx_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/envtest"
	"github.com/roster-sd/roster/internal/testing/etcdfxtest"
	"github.com/roster-sd/roster/internal/testing/testcert"
)

// etcdSetup is the module's Config and the etcd backend's, as an
// etcd-only application supplies them.
type etcdSetup = etcdfxtest.Setup

// etcdConfig configures the modules for srv, under a prefix of the test's
// own.
func etcdConfig(t *testing.T, srv *etcdtest.Server) etcdSetup {
	return etcdfxtest.Config(t, srv, "/etcdfx-test")
}

func testPrefix(t *testing.T) string { return etcdfxtest.Prefix(t, "/etcdfx-test") }

func ctxFor(t *testing.T, d time.Duration) context.Context { return etcdfxtest.Ctx(t, d) }

var payments = etcdfxtest.Payments()

// testLogger routes logs to t.Log until the test ends, under the name
// "app".
func testLogger(t testing.TB) hclog.Logger { return etcdfxtest.Logger(t) }

// writeCACert writes a valid CA file of the test's own.
func writeCACert(t *testing.T) string { return testcert.WriteCA(t) }

// deadEndpoint returns a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string { return etcdfxtest.DeadEndpoint(t) }

var env = envtest.Lookup
