// Package depcheck lets a test check what a package links: roster keeps
// registry servers (etcd's, NATS's) and test-only packages out of the
// programs that do not ask for them. Import it from _test.go files only.
package depcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// Forbid fails t if the package in the current directory depends, directly
// or not, on a package whose import path equals or starts with one of
// prefixes. It skips t when the go command is not available.
func Forbid(t testing.TB, prefixes ...string) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not available to list dependencies: %v", err)
	}
	out, err := exec.Command(goCmd, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, p := range prefixes {
			if pkg == p || strings.HasPrefix(pkg, p+"/") {
				t.Errorf("links %s", pkg)
			}
		}
	}
}
