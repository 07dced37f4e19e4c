package etcd_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

// TestWatchFreshSetAfterOutageIsCurrent: the set a watcher gets right after
// an outage is the one it takes as current (the feed's outage is over), so
// it must be the registry's real set, changes made during the outage
// included, not the set from before the outage (#20 item 7). Three
// outages, each with changes while the watcher was cut off.
func TestWatchFreshSetAfterOutageIsCurrent(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
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
