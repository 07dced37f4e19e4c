package etcd_test

import (
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// Issue #23 item 2, #20 items 1 and 11: etcd wiped (roster dev restarted
// without its data) while several processes are registered. A process that
// comes back after the others have written to the new history resumes its
// own-key watch from a revision etcd has already passed, so the watch sees
// no rollback; it must still notice at once that etcd lost its lease, not
// at its next keep-alive, a third of the TTL after the last one (here 20 s
// after the grant). The laggard reaches etcd through a proxy that rejects
// it until the other process has written again and the revision has passed
// the laggard's, which makes the race of issue #23 certain.
func TestWipedEtcdLaggardReregistersPromptly(t *testing.T) {
	t.Parallel()
	const (
		ttl    = 60 * time.Second // its next keep-alive is due 20 s after the grant
		within = 3 * time.Second  // from the link's return; its reconnection backoff is 200 ms
	)
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])

	cfg := testConfig(t, srv.Endpoints())
	cfg.TTL = ttl
	first := newBackend(t, cfg)
	register(t, first, instance("payments", "p-1"))
	lagCfg := testConfig(t, []string{proxy.Endpoint()})
	lagCfg.TTL = ttl
	laggard := newBackend(t, lagCfg)
	register(t, laggard, instance("payments", "p-2"))
	lagKey := laggard.Key("payments", "p-2")
	resp, err := getKey(cli, lagKey, waitFor)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read %s: %v %v", lagKey, resp, err)
	}
	lagRev := resp.Kvs[0].ModRevision

	proxy.Reject()
	testwait.Until(t, waitFor, "the laggard sees the link cut", func() bool { return !laggard.BackendFacts().Connected })
	if err := srv.Wipe(); err != nil {
		t.Fatal(err)
	}
	// The first process writes again, and the new history passes the
	// revision the laggard's watch resumes from.
	testwait.Until(t, ttl/3+waitFor, "the first process writes again on the wiped etcd", func() bool {
		return first.Lease() != 0 && keyUnder(cli, first.Key("payments", "p-1"), first.Lease(), 0)
	})
	puts(t, cli, "filler", int(lagRev)+2)

	back := time.Now()
	proxy.Accept()
	if !eventually(within, func() bool {
		return laggard.Lease() != 0 && keyUnder(cli, lagKey, laggard.Lease(), 0) &&
			stateOf(laggard, "payments", "p-2") == discovery.StateRegistered
	}) {
		t.Fatalf("laggard not registered again on the wiped etcd %v after its link returned (next keep-alive due %v after its grant); status %v",
			within, ttl/3, stateOf(laggard, "payments", "p-2"))
	}
	t.Logf("laggard registered again %v after its link returned", time.Since(back).Round(time.Millisecond))
}
