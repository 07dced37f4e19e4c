package nats_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// A NATS user links the NATS client only: no server (not even the
// embedded one the tests use), nothing of etcd's, and no test package.
func TestDoesNotLinkServers(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "github.com/nats-io/nats-server/v2",
		"github.com/roster-sd/roster/backends/nats/embedded", "github.com/roster-sd/roster/backends/nats/natstest",
		"go.etcd.io", "github.com/roster-sd/roster/backends/etcd",
		"testing", "go.uber.org/goleak")
}
