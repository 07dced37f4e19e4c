package nats_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/depcheck"
)

// A NATS user links the NATS client only: no server, and nothing of etcd's.
func TestDoesNotLinkServers(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "github.com/nats-io/nats-server/v2", "go.etcd.io", "testing")
}
