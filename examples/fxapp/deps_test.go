package main

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// The example is an etcd-only fx application (fxmodule.Module and
// etcdfx.Module): it links no NATS package and no other backend.
func TestLinksNoOtherBackend(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "github.com/nats-io", "github.com/roster-sd/roster/backends/nats",
		"github.com/roster-sd/roster/backends/memory", "github.com/roster-sd/roster/fxmodule/fxall")
}
