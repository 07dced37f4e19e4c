package memoryfx_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// A memory-only fx application (fxmodule and memoryfx) links no
// registry's client and no other backend.
func TestLinksNoRegistryClient(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "github.com/nats-io", "go.etcd.io/etcd",
		"github.com/roster-sd/roster/backends/etcd", "github.com/roster-sd/roster/backends/nats",
		"testing", "go.uber.org/goleak")
}
