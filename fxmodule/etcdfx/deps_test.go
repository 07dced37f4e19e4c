package etcdfx_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// An etcd-only fx application (fxmodule and etcdfx) links etcd's client
// and no NATS package, no other backend, no registry server and no test
// package.
func TestLinksOnlyEtcd(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "github.com/nats-io", "github.com/roster-sd/roster/backends/nats",
		"github.com/roster-sd/roster/backends/memory", "go.etcd.io/etcd/server/v3",
		"testing", "go.uber.org/goleak", "github.com/roster-sd/roster/backends/etcd/embedded")
}
