package discoverytest

import (
	"context"
	"fmt"
	"testing"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/revisiontest"
)

// Wiper is an optional part of a FaultHarness whose registry can lose all
// its data: a registry restored from nothing or reinstalled at the same
// address, whose revisions start again. A FaultHarness that implements it
// runs the FaultWipe... scenarios; the backends' sets must carry
// revisions (discovery.RevisionResolver).
type Wiper interface {
	// Wipe stops the registry, deletes all its data and starts it again,
	// empty, on the same address (and with the same cluster identity
	// where it has one), then returns once it serves requests.
	Wipe(ctx context.Context) error
}

// testFaultWipeResetsTheWatchersRevisions: the registry is wiped while a
// watcher that has read a set at revision R does not look; the new
// history's sets have revisions below R. Before any such set the watcher
// must report an outage (an error wrapping discovery.ErrUnavailable), so
// that a client of revisions (grpcresolver, the cache) never compares the
// new history's revisions with the old one's and takes the new sets for
// older ones; its revisions then follow the new history.
func testFaultWipeResetsTheWatchersRevisions(t *testing.T, f *faultEnv) {
	wiper, ok := f.fh.(Wiper)
	if !ok {
		t.Skipf("skipped: the FaultHarness (%T) does not implement discoverytest.Wiper", f.fh)
	}
	a, c := f.backend(), f.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	f.register(a, p1)
	// Move the old history's revisions well past what the new one reaches
	// in this subtest.
	for i := range 50 {
		o := inst("other", fmt.Sprintf("o-%02d", i), "10.0.1.1:80")
		f.register(a, o)
		f.deregister(a, o)
	}
	f.register(a, p2)
	w := f.watch(c, payments)
	rw, ok := w.(discovery.RevisionWatcher)
	if !ok {
		t.Skipf("skipped: %T is not a discovery.RevisionWatcher", w)
	}
	// Another watcher of the same backend (the same feed, where it has
	// one) shows when the backend holds the new history, while rw does
	// not look.
	other := f.watch(c, payments)
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	first, before, err := rw.NextRevision(ctx)
	if err != nil || !discovery.EqualSets(first, set(p1, p2)) || before <= 100 {
		t.Fatalf("first NextRevision = %s, %d, %v; want %s past revision 100", fmtSet(first), before, err, fmtSet(set(p1, p2)))
	}
	f.nextUntil(other, set(p1, p2))

	if err := wiper.Wipe(f.ctx()); err != nil {
		t.Fatalf("wiping the registry: %v", err)
	}
	// The registrar writes p-1 and p-2 into the new registry (a handle
	// made now can read only the new one); p-3 then comes.
	f.waitResolve(f.observer(), payments, set(p1, p2))
	p3 := inst(payments, "p-3", "10.0.0.3:80")
	f.register(a, p3)
	f.nextUntil(other, set(p1, p2, p3))
	revisiontest.NewHistory(f.ctx(), t, rw, before, set(p1, p2, p3))
}
