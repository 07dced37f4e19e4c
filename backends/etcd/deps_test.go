package etcd_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// An etcd user links the etcd client only: no server, and nothing of
// NATS's.
func TestDoesNotLinkServers(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "go.etcd.io/etcd/server/v3", "github.com/nats-io", "testing")
}
