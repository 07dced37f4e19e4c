package etcd_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// wipeBehindProxy wipes srv (same member and cluster IDs, revision back to
// 1) while the Backends behind proxy are cut off, and runs write on the
// new, empty etcd before they can reach it again.
func wipeBehindProxy(t *testing.T, srv *etcdtest.Server, proxy *etcdtest.Proxy, write func()) {
	t.Helper()
	proxy.Reject()
	if err := srv.Wipe(); err != nil {
		t.Fatal(err)
	}
	write()
	proxy.Accept()
}

// TestWatchListsAgainAfterWipeWithSameClusterID: etcd is wiped (same
// cluster ID) while the watch is cut off, and the new history passes the
// revision the watch had reached before it reconnects: the cluster ID and
// revision check cannot tell, and the watch must still list again and
// hold the new truth (#20 item 9).
func TestWatchListsAgainAfterWipeWithSameClusterID(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	cli := etcdtest.Client(t, srv)
	for i := range 20 {
		putRaw(t, cli, b, instance("payments", fmt.Sprintf("old-%02d", i)))
	}
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, ids(oldSet(20)), waitFor)

	wipeBehindProxy(t, srv, proxy, func() {
		fresh := etcdtest.Client(t, srv)
		putRaw(t, fresh, b, instance("payments", "new-1"))
		for i := range 40 { // past the revision the watch reached
			putRaw(t, fresh, b, instance("other", fmt.Sprintf("o-%02d", i)))
		}
	})
	c.waitIDs(t, "[new-1]", waitFor)
	putRaw(t, etcdtest.Client(t, srv), b, instance("payments", "new-2"))
	c.waitIDs(t, "[new-1 new-2]", waitFor)
}

// TestFindServicesAfterWipeWithSameClusterID: FindServices goes on after
// etcd was wiped (same cluster ID) and written past the revision it had
// reached: it reports the services of the new history, including one
// written at a revision below the one it had reached (#20 item 9).
func TestFindServicesAfterWipeWithSameClusterID(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	cli := etcdtest.Client(t, srv)
	for i := range 20 {
		putRaw(t, cli, b, instance("old", fmt.Sprintf("o-%02d", i)))
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.FindServices(ctx, func(s []string) {
			mu.Lock()
			seen = append(seen, s...)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	has := func(service string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, service)
	}
	testwait.Until(t, waitFor, "FindServices to report old", func() bool { return has("old") })

	wipeBehindProxy(t, srv, proxy, func() {
		fresh := etcdtest.Client(t, srv)
		putRaw(t, fresh, b, instance("early", "e-1")) // below the revision reached
		for i := range 40 {
			putRaw(t, fresh, b, instance("filler", fmt.Sprintf("f-%02d", i)))
		}
	})
	testwait.Until(t, waitFor, "FindServices to report early, written after the wipe", func() bool {
		return has("early")
	})
	mu.Lock()
	t.Logf("services reported: %s", strings.Join(seen, ","))
	mu.Unlock()
}
