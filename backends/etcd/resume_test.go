package etcd_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// countingBackend starts a Backend on a client of its own whose reads of
// service keys (a range read, or a transaction that reads, other than of
// the history key alone) are counted, attempt by attempt, as they leave
// the client. Both are closed at the end of the test.
func countingBackend(t testing.TB, cfg etcd.Config) (*etcd.Backend, *atomic.Int64) {
	t.Helper()
	var ranges atomic.Int64
	history := cmp.Or(cfg.Prefix, etcd.DefaultPrefix) + "/~history"
	cc := etcd.ClientConfig(cfg)
	cc.DialOptions = append(cc.DialOptions, grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn,
			invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			switch r := req.(type) {
			case *etcdserverpb.RangeRequest:
				if string(r.Key) != history {
					ranges.Add(1)
				}
			case *etcdserverpb.TxnRequest:
				for _, op := range r.Success {
					if op.GetRequestRange() != nil && string(op.GetRequestRange().Key) != history {
						ranges.Add(1)
						break
					}
				}
			}
			return invoker(ctx, method, req, reply, conn, opts...)
		}))
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	b, err := etcd.NewWithClient(cli, cfg)
	if err != nil {
		t.Fatalf("etcd.NewWithClient: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, &ranges
}

// putService writes n instances of service in one transaction.
func putService(t testing.TB, cli *clientv3.Client, b *etcd.Backend, service string, n int) string {
	t.Helper()
	ops := make([]clientv3.Op, 0, n)
	want := make([]discovery.Instance, 0, n)
	for i := range n {
		in := instance(service, fmt.Sprintf("i-%03d", i))
		v, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(b.Key(service, in.ID), string(v)))
		want = append(want, in)
	}
	if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	return ids(discovery.NormalizeSet(want))
}

// nextOutage waits for w to report that etcd is unreachable.
func nextOutage(t *testing.T, w discovery.Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if set, err := w.Next(ctx); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("Next with etcd down = %s, %v; want ErrUnavailable", ids(set), err)
	}
}

// nextSet waits for w's next set and checks that it holds the IDs want.
func nextSet(t *testing.T, w discovery.Watcher, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if set, err := w.Next(ctx); err != nil || ids(set) != want {
		t.Fatalf("Next = %s, %v; want %s", ids(set), err, want)
	}
}

// TestWatchResumesWithoutListAfterRestart: watchers of a service, each in
// a Backend of its own, are told of an etcd restart and then that their
// set is fresh, without a single range read: no revision was compacted,
// so each watch resumes from the revision it reached (#10).
func TestWatchResumesWithoutListAfterRestart(t *testing.T) {
	t.Parallel()
	const watchers, size = 10, 100
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	backends := make([]*etcd.Backend, watchers)
	ranges := make([]*atomic.Int64, watchers)
	ws := make([]discovery.Watcher, watchers)
	for i := range watchers {
		backends[i], ranges[i] = countingBackend(t, testConfig(t, srv.Endpoints()))
	}
	want := putService(t, cli, backends[0], "payments", size)
	for i, b := range backends {
		w, err := b.Watch(context.Background(), "payments")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		ws[i] = w
		nextSet(t, w, want)
	}
	before := make([]int64, watchers)
	for i, n := range ranges {
		before[i] = n.Load()
		if before[i] != 1 {
			t.Errorf("watcher %d: %d range reads to start; want 1", i, before[i])
		}
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		nextOutage(t, w)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		nextSet(t, w, want)
	}
	var reads int64
	for i, n := range ranges {
		reads += n.Load() - before[i]
	}
	t.Logf("range reads by %d watchers of a %d-instance service after an etcd restart: %d", watchers, size, reads)
	if reads != 0 {
		t.Errorf("watchers made %d range reads after the restart; want 0", reads)
	}

	// The resumed watches still follow changes.
	putRaw(t, cli, backends[0], instance("payments", "z-1"))
	want2 := want[:len(want)-1] + " z-1]"
	for _, w := range ws {
		nextSet(t, w, want2)
	}
}

// TestWatchListsOnceAfterCompactionWhileDisconnected: a watch whose
// revision was compacted while it was cut off lists its service exactly
// once, and ends with the exact set (#10).
func TestWatchListsOnceAfterCompactionWhileDisconnected(t *testing.T) {
	t.Parallel()
	const watchers = 3
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	backends := make([]*etcd.Backend, watchers)
	ranges := make([]*atomic.Int64, watchers)
	cs := make([]*collector, watchers)
	for i := range watchers {
		backends[i], ranges[i] = countingBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	}
	putRaw(t, cli, backends[0], instance("payments", "p-1"))
	putRaw(t, cli, backends[0], instance("payments", "p-2"))
	for i, b := range backends {
		w, err := b.Watch(context.Background(), "payments")
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = collect(t, w)
		cs[i].waitIDs(t, "[p-1 p-2]", waitFor)
	}
	before := make([]int64, watchers)
	for i, n := range ranges {
		before[i] = n.Load()
	}

	proxy.Blackhole()
	putRaw(t, cli, backends[0], instance("payments", "p-3"))
	if _, err := cli.Delete(context.Background(), backends[0].Key("payments", "p-1")); err != nil {
		t.Fatal(err)
	}
	compactNow(t, cli)
	if err := proxy.DropConnections(); err != nil {
		t.Fatal(err)
	}
	proxy.Unblackhole()
	for _, c := range cs {
		c.waitIDs(t, "[p-2 p-3]", waitFor)
	}
	putRaw(t, cli, backends[0], instance("payments", "p-4"))
	for _, c := range cs {
		c.waitIDs(t, "[p-2 p-3 p-4]", waitFor)
	}
	for i, n := range ranges {
		if got := n.Load() - before[i]; got != 1 {
			t.Errorf("watcher %d listed %d times after the compaction; want 1", i, got)
		}
	}
}

// TestWatchConvergesAfterEtcdWiped: etcd comes back from an outage with
// its data gone and another set written, at a revision below the one the
// watch reached: the watch must list again and hold the new truth (#10).
func TestWatchConvergesAfterEtcdWiped(t *testing.T) {
	t.Parallel()
	old := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, old.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	cli := etcdtest.Client(t, old)
	for i := range 20 {
		putRaw(t, cli, b, instance("payments", fmt.Sprintf("old-%02d", i)))
	}
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	nextSet(t, w, ids(discovery.NormalizeSet(oldSet(20))))

	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	nextOutage(t, w)
	port := portOf(t, old.Endpoints()[0])
	fresh := etcdtest.Start(t, etcdtest.WithClientPort(port))
	fcli := etcdtest.Client(t, fresh)
	c := collect(t, w)
	putRaw(t, fcli, b, instance("payments", "new-1"))
	putRaw(t, fcli, b, instance("payments", "new-2"))
	c.waitIDs(t, "[new-1 new-2]", waitFor)
	putRaw(t, fcli, b, instance("payments", "new-3"))
	c.waitIDs(t, "[new-1 new-2 new-3]", waitFor)
}

func oldSet(n int) []discovery.Instance {
	set := make([]discovery.Instance, n)
	for i := range set {
		set[i] = instance("payments", fmt.Sprintf("old-%02d", i))
	}
	return set
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(hostport[strings.LastIndex(hostport, ":")+1:], "%d", &port); err != nil {
		t.Fatalf("port of %s: %v", hostport, err)
	}
	return port
}

// TestWatchStartedWhileEtcdUnreachableFails: a Watch started while etcd
// cannot be reached, here after the Backend has already seen the outage
// through another watch, reports ErrUnavailable once its first list fails,
// so the cache's first Resolve fails at once instead of waiting out its
// context (#15).
func TestWatchStartedWhileEtcdUnreachableFails(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	putRaw(t, etcdtest.Client(t, srv), b, instance("payments", "p-1"))
	putRaw(t, etcdtest.Client(t, srv), b, instance("orders", "o-1"))
	early, err := b.Watch(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(early.Stop)
	nextSet(t, early, "[]")
	proxy.Blackhole()
	if err := proxy.DropConnections(); err != nil {
		t.Fatal(err)
	}
	nextOutage(t, early)

	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	nextOutage(t, w)

	c, err := cache.New(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	start := time.Now()
	_, err = c.Resolve(ctx, "orders")
	if !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("cache Resolve with etcd unreachable = %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > waitFor/2 {
		t.Errorf("cache Resolve took %v to fail; want well under its %v context", d, waitFor)
	}

	proxy.Unblackhole()
	nextSet(t, w, "[p-1]")
	testwait.Until(t, waitFor, "cache Resolve to return [o-1] once etcd is back", func() bool {
		got, err := c.Resolve(ctx, "orders")
		return err == nil && ids(got) == "[o-1]"
	})
}
