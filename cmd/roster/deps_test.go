package main

import (
	"testing"

	"github.com/roster-sd/roster/internal/testing/depcheck"
)

// TestNoTestingInBinary: the roster binary links neither package testing
// nor goleak; roster dev and roster bench run etcd through package
// embedded, not etcdtest.
func TestNoTestingInBinary(t *testing.T) {
	t.Parallel()
	depcheck.Forbid(t, "testing", "go.uber.org/goleak", "github.com/roster-sd/roster/backends/etcd/etcdtest")
}
