// Package revisiontest checks what a discovery.RevisionWatcher reports
// when its registry starts a new history (wiped, its bucket created again,
// restored from a backup), for discoverytest's fault scenarios and the
// backends' own tests. It imports testing, so only test code may import
// it.
package revisiontest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// NewHistory reads rw until its set is want, after a registry that
// started a new history whose revisions are below before: it fails t
// unless an outage (an error wrapping discovery.ErrUnavailable) came
// before any lower revision, every set has a revision, and the new
// history's revisions are lower indeed. ctx bounds the reads.
func NewHistory(ctx context.Context, t testing.TB, rw discovery.RevisionWatcher, before uint64, want []discovery.Instance) {
	t.Helper()
	var seen []string
	outage := false
	last := before
	for {
		got, rev, err := rw.NextRevision(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the watcher did not reach [%s] in the new history; saw %v", ids(want), seen)
		}
		seen = append(seen, fmt.Sprintf("[%s]@%d %v", ids(got), rev, err))
		if errors.Is(err, discovery.ErrUnavailable) {
			outage, last = true, 0
			continue
		}
		if err != nil {
			t.Fatalf("NextRevision = %v; saw %v", err, seen)
		}
		if rev == 0 {
			t.Fatalf("a set without revision; saw %v", seen)
		}
		if rev < last {
			t.Fatalf("the revision went back from %d to %d with no outage reported in between: a client would "+
				"take the new history's sets for older ones; saw %v", last, rev, seen)
		}
		last = rev
		if discovery.EqualSets(got, want) {
			break
		}
	}
	if !outage || last >= before {
		t.Errorf("outage reported %v, last revision %d against %d before; want an outage and a lower revision; saw %v",
			outage, last, before, seen)
	}
	t.Logf("watcher saw %v", seen)
}

// ids lists the IDs of set, space-separated.
func ids(set []discovery.Instance) string {
	out := make([]string, 0, len(set))
	for _, in := range set {
		out = append(out, in.ID)
	}
	return strings.Join(out, " ")
}
