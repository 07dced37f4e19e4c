package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

// TestWipedEtcdResetsTheWatchersRevisions: etcd is wiped (same cluster
// ID) while a watcher that has read a set at revision R does not look;
// the new history's sets have revisions below R. Before any such set, the
// watcher must report an outage (discovery.ErrUnavailable), so that a
// client of revisions (grpcresolver, the cache) never compares the new
// history's revisions with the old one's and takes the new sets for older
// ones. (Fail followed by a publish coalesces for a watcher that did not
// look meanwhile: only Feed.Reset is reported whatever follows.)
func TestWipedEtcdResetsTheWatchersRevisions(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	cli := etcdtest.Client(t, srv)
	putRaw(t, cli, b, instance("payments", "old-1"))
	for i := range 100 {
		putRaw(t, cli, b, instance("other", fmt.Sprintf("o-%03d", i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), heavyWait)
	defer cancel()
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rw, ok := w.(discovery.RevisionWatcher)
	if !ok {
		t.Fatal("the watcher is not a discovery.RevisionWatcher")
	}
	set, before, err := rw.NextRevision(ctx)
	if err != nil || ids(set) != "[old-1]" || before <= 100 {
		t.Fatalf("first NextRevision = %v, %d, %v; want [old-1] past revision 100", set, before, err)
	}

	wipeBehindProxy(t, srv, proxy, func() {
		putRaw(t, etcdtest.Client(t, srv), b, instance("payments", "new-1"))
	})
	// The watcher does not look until the backend's watch holds the new
	// history: another watcher of the same backend (the same feed) sees it.
	other, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	c := collect(t, other)
	c.waitIDs(t, "[new-1]", waitFor)

	var seen []string
	outage := false
	for {
		set, rev, err := rw.NextRevision(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the watcher did not reach [new-1]; saw %v", seen)
		}
		seen = append(seen, fmt.Sprintf("%s@%d %v", ids(set), rev, err))
		if errors.Is(err, discovery.ErrUnavailable) {
			outage = true
			continue
		}
		if err != nil {
			t.Fatalf("NextRevision: %v; saw %v", err, seen)
		}
		if rev < before && !outage {
			t.Fatalf("the revision went back from %d to %d with no outage reported in between; saw %v", before, rev, seen)
		}
		if ids(set) == "[new-1]" {
			break
		}
	}
	if !outage {
		t.Errorf("no outage reported before the new history's sets; saw %v", seen)
	}
}
