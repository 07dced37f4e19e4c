package fxmodule_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// An application that adds the module links the backends' clients, never a
// registry server nor a test package.
func TestDoesNotLinkServers(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "go.etcd.io/etcd/server/v3", "github.com/nats-io/nats-server/v2",
		"testing", "go.uber.org/goleak", "github.com/roster-sd/roster/backends/etcd/embedded")
}

// The core module is backend-free: it links no backend and no registry
// client, so that an application links only the backend module it adds
// (etcdfx, natsfx, memoryfx; see their deps tests).
func TestCoreLinksNoBackend(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "github.com/nats-io", "go.etcd.io/etcd",
		"github.com/roster-sd/roster/backends/etcd", "github.com/roster-sd/roster/backends/nats",
		"github.com/roster-sd/roster/backends/memory")
}
