package embedded_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// A command that links the embedded server (roster dev) links no test
// framework, and nothing of etcd's.
func TestDoesNotLinkTesting(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "testing", "go.uber.org/goleak", "go.etcd.io", "github.com/roster-sd/roster/backends/etcd")
}
