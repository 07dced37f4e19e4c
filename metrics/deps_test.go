package metrics_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// An application that uses the package links no registry server nor a
// test package.
func TestDoesNotLinkServers(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "go.etcd.io/etcd/server/v3", "github.com/nats-io/nats-server/v2",
		"testing", "go.uber.org/goleak", "github.com/roster-sd/roster/backends/etcd/embedded")
}
