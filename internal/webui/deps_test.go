package webui_test

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// TestDeps: the web view knows no backend (it reads a Registry) and links
// no registry server and no test package.
func TestDeps(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "testing", "go.uber.org/goleak", "github.com/chromedp",
		"github.com/roster-sd/roster/backends", "go.etcd.io/etcd", "github.com/nats-io")
}
