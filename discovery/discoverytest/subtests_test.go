package discoverytest

import "testing"

func TestSubtestNamesAreUnique(t *testing.T) {
	if len(subtests) < 20 {
		t.Errorf("%d subtests; want at least 20", len(subtests))
	}
	seen := make(map[string]bool)
	for _, st := range allSubtests() {
		if seen[st.name] {
			t.Errorf("subtest %q appears twice", st.name)
		}
		seen[st.name] = true
	}
}
