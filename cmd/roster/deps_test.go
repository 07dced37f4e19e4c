package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestingInBinary: the roster binary links neither package testing
// nor goleak; roster dev and roster bench run etcd through package
// embedded, not etcdtest.
func TestNoTestingInBinary(t *testing.T) {
	t.Parallel()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not available to list the binary's dependencies: %v", err)
	}
	out, err := exec.Command(goCmd, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "go.uber.org/goleak") ||
			strings.HasSuffix(pkg, "/etcdtest") {
			t.Errorf("roster links %s", pkg)
		}
	}
}
