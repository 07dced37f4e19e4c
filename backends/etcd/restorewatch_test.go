package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// TestWatchAfterRestoreFollowsTheRestoredHistory: etcd is restored from a
// backup while a Watcher is cut off, and the restored history passes the
// revision the watch had reached before it reconnects, so that neither
// the revision check nor the history key (the backup holds it) can tell.
// The watcher must end with what etcd holds: the instance deleted after
// the backup is back, the one registered after it is gone, and the one
// registered in the restored history at a revision below the one reached
// is there (issue #20, backup restore, read side).
func TestWatchAfterRestoreFollowsTheRestoredHistory(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	cli := etcdtest.Client(t, srv)
	for i := range 5 {
		putRaw(t, cli, b, instance("payments", fmt.Sprintf("old-%02d", i)))
	}
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, ids(oldSet(5)), waitFor)
	backup, err := srv.Backup()
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, cli, b, instance("payments", "late-1"))
	if _, err := cli.Delete(context.Background(), b.Key("payments", "old-00")); err != nil {
		t.Fatal(err)
	}
	c.waitIDs(t, "[late-1 old-01 old-02 old-03 old-04]", waitFor)

	proxy.Reject()
	if err := srv.RestoreBackup(backup); err != nil {
		t.Fatal(err)
	}
	fresh := etcdtest.Client(t, srv)
	putRaw(t, fresh, b, instance("payments", "new-1")) // below the revision the watch reached
	for i := range 40 {                                // past it
		putRaw(t, fresh, b, instance("other", fmt.Sprintf("o-%02d", i)))
	}
	proxy.Accept()
	back := time.Now()

	want := "[new-1 old-00 old-01 old-02 old-03 old-04]"
	if got := resolveIDs(t, b); got != want {
		t.Fatalf("Resolve = %s; want %s (the test's premise)", got, want)
	}
	c.waitIDs(t, want, waitFor)
	t.Logf("the watcher held etcd's set %v after the link came back", time.Since(back).Round(time.Millisecond))
	putRaw(t, fresh, b, instance("payments", "new-2"))
	c.waitIDs(t, "[new-1 new-2 old-00 old-01 old-02 old-03 old-04]", waitFor)
}

// resolveIDs returns the IDs Resolve gives for payments.
func resolveIDs(t *testing.T, b *etcd.Backend) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	set, err := b.Resolve(ctx, "payments")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return ids(set)
}

// TestWatchListsAgainWhenAnAnswerShowsARollback: a service watched while
// empty has no change of its own to check when it resumes. When another
// answer of the process (here its writer's) shows etcd's history went
// back, the watch lists again: the instance deleted after the backup is
// back in etcd, and must be back in the watcher's set, though the
// restored history passes the revision the watch reached before its
// stream reconnects.
func TestWatchListsAgainWhenAnAnswerShowsARollback(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b, gate := gatedBackend(t, testConfig(t, srv.Endpoints()))
	// A first watch writes the history key, which the backup then holds.
	w0, err := b.Watch(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	collect(t, w0).waitIDs(t, "[]", waitFor)
	putRaw(t, cli, b, instance("payments", "x"))
	backup, err := srv.Backup()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(context.Background(), b.Key("payments", "x")); err != nil {
		t.Fatal(err)
	}
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[]", waitFor)
	register(t, b, instance("orders", "o-1"))

	gate.hold()
	if err := srv.RestoreBackup(backup); err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("orders", "o-2")) // the writer's answer shows the rollback
	puts(t, cli, "filler", 50)                // past the revision the watch reached
	gate.release()

	if got := resolveIDs(t, b); got != "[x]" {
		t.Fatalf("Resolve = %s; want [x] (the test's premise)", got)
	}
	c.waitIDs(t, "[x]", waitFor)
}

// TestWatchResumesUncheckedWhenItsNewestChangeIsCompacted: a resumed watch
// starts at the service's newest change to check it (see the test above),
// but when that change was compacted away while the revision the watch
// reached was not, it resumes from the revision reached, as before the
// check existed: no range read, and the set is right.
func TestWatchResumesUncheckedWhenItsNewestChangeIsCompacted(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b, ranges := countingBackend(t, testConfig(t, srv.Endpoints()))
	putRaw(t, cli, b, instance("payments", "p-1"))
	putRaw(t, cli, b, instance("other", "o-1")) // the service's newest change is older
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	// Compacted up to the revision the watch listed at, and no further.
	compactNow(t, cli)
	before := ranges.Load()

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	putRaw(t, etcdtest.Client(t, srv), b, instance("payments", "p-2"))
	c.waitIDs(t, "[p-1 p-2]", waitFor)
	if got := ranges.Load() - before; got != 0 {
		t.Errorf("the watch read the service %d times after the restart; want 0", got)
	}
}
