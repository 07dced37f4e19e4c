package natsfx_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// A NATS-only fx application (fxmodule and natsfx) links NATS's client
// and no etcd package (client or other), no other backend, no registry
// server and no test package.
func TestLinksOnlyNATS(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "go.etcd.io/etcd", "github.com/roster-sd/roster/backends/etcd",
		"github.com/roster-sd/roster/backends/memory", "github.com/nats-io/nats-server/v2",
		"testing", "go.uber.org/goleak", "github.com/roster-sd/roster/backends/nats/embedded")
}
