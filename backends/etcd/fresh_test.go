package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestWatchFreshSetAfterOutageIsCurrent: the set a watcher gets right after
// an outage is the one it takes as current (the feed's outage is over), so
// it must be the registry's real set, changes made during the outage
// included, not the set from before the outage (#20 item 7). Three
// outages, each with changes while the watcher was cut off.
func TestWatchFreshSetAfterOutageIsCurrent(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	putRaw(t, cli, b, instance("payments", "p-0"))
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	nextSet(t, w, "[p-0]")

	want := []discovery.Instance{instance("payments", "p-0")}
	stale := 0
	const outages = 3
	for i := 1; i <= outages; i++ {
		proxy.Reject()
		nextOutage(t, w)
		// Changes the watcher misses while it is cut off, with writes to
		// other keys around them so that its revision is well behind.
		for j := range 5 {
			putRaw(t, cli, b, instance("other", fmt.Sprintf("o-%d-%d", i, j)))
		}
		in := instance("payments", fmt.Sprintf("p-%d", i))
		putRaw(t, cli, b, in)
		want = append(want, in)
		proxy.Accept()

		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		set, err := w.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("outage %d: Next after etcd is back: %v", i, err)
		}
		if got := ids(set); got != ids(want) {
			stale++
			t.Errorf("outage %d: first set after the outage = %s; want the current %s", i, got, ids(want))
			nextSet(t, w, ids(want)) // the real set follows
		}
	}
	t.Logf("stale first sets after an outage: %d of %d", stale, outages)
}

// TestWatchReportsQuorumLoss: a member that has lost its leader cancels
// the watch ("no leader"); watchers must be told the registry is
// unavailable, and the cache must mark its set stale, rather than serve
// the last set as fresh through the quorum loss; once the quorum is back
// they get the current set (#20, found by reading).
func TestWatchReportsQuorumLoss(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	members := c.Members()
	// The Backend talks to the member that stays up; the other two stop.
	cfg := testConfig(t, members[0].Endpoints())
	b := newBackend(t, cfg)
	cli := etcdtest.Client(t, members[0])
	putRaw(t, cli, b, instance("payments", "p-1"))
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	nextSet(t, w, "[p-1]")
	cached, err := cache.New(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cached.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := cached.Resolve(ctx, "payments"); err != nil {
		t.Fatal(err)
	}

	for _, m := range members[1:] {
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	lost := time.Now()
	nextOutage(t, w)
	t.Logf("watcher told of the quorum loss after %v", time.Since(lost).Round(time.Millisecond))
	testwait.Until(t, waitFor, "the cache to mark payments stale", func() bool {
		_, _, stale, ok := cached.Snapshot("payments")
		return ok && stale
	})

	for _, m := range members[1:] {
		if err := m.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// The first set after the outage is [p-1], or [p-1 p-2] if the
	// watch came back after the write; then [p-1 p-2].
	col := collect(t, w)
	putRaw(t, etcdtest.Client(t, members[1]), b, instance("payments", "p-2"))
	col.waitIDs(t, "[p-1 p-2]", waitFor)
	testwait.Until(t, waitFor, "the cache to hold a fresh [p-1 p-2]", func() bool {
		set, _, stale, ok := cached.Snapshot("payments")
		return ok && !stale && ids(set) == "[p-1 p-2]"
	})
}
