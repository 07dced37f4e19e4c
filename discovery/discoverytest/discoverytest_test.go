package discoverytest_test

import (
	"testing"

	"github.com/roster-sd/roster/discovery/discoverytest"
)

func TestSubtestNamesAreUnique(t *testing.T) {
	names := discoverytest.SubtestNames()
	if len(names) < 20 {
		t.Errorf("SubtestNames() has %d names; want at least 20", len(names))
	}
	seen := make(map[string]bool)
	for _, n := range names {
		if seen[n] {
			t.Errorf("subtest %q appears twice", n)
		}
		seen[n] = true
	}
}
