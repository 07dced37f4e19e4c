package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/linebuf"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// ids lists the IDs of a set, for messages and comparisons.
func ids(set []discovery.Instance) string {
	out := make([]string, len(set))
	for i, in := range set {
		out[i] = in.ID
	}
	return fmt.Sprint(out)
}

// putRaw writes an instance as another process would, without a lease.
func putRaw(t testing.TB, cli *clientv3.Client, b *etcd.Backend, in discovery.Instance) {
	t.Helper()
	v, _ := json.Marshal(in)
	if _, err := cli.Put(context.Background(), b.Key(in.Service, in.ID), string(v)); err != nil {
		t.Fatal(err)
	}
}

// collector reads a Watcher on its own goroutine and keeps every set.
type collector struct {
	mu     sync.Mutex
	sets   [][]discovery.Instance
	fresh  []bool // sets[i] came right after an outage, so it may repeat
	outage bool
	change chan struct{}
	done   chan struct{}
}

func collect(t testing.TB, w discovery.Watcher) *collector {
	c := &collector{change: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			set, err := w.Next(context.Background())
			if errors.Is(err, discovery.ErrUnavailable) {
				c.mu.Lock()
				c.outage = true // the watcher goes on
				c.mu.Unlock()
				continue
			}
			if err != nil {
				return
			}
			c.mu.Lock()
			c.sets = append(c.sets, set)
			c.fresh = append(c.fresh, c.outage)
			c.outage = false
			c.mu.Unlock()
			select {
			case c.change <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { w.Stop(); <-c.done })
	return c
}

func (c *collector) last() ([]discovery.Instance, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sets) == 0 {
		return nil, 0
	}
	return c.sets[len(c.sets)-1], len(c.sets)
}

// waitFor waits until the newest set has exactly the wanted IDs.
func (c *collector) waitIDs(t testing.TB, want string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if set, n := c.last(); n > 0 && ids(set) == want {
			return
		}
		select {
		case <-c.change:
		case <-timer.C:
			set, _ := c.last()
			t.Fatalf("watcher's newest set is %s after %v; want %s", ids(set), d, want)
		}
	}
}

func TestWatchListsThenFollows(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	register(t, b, instance("payments", "p-1"))
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	register(t, b, instance("payments", "p-2"))
	c.waitIDs(t, "[p-1 p-2]", waitFor)
	register(t, b, instance("paymentsx", "other")) // a service whose name extends ours
	putRaw(t, cli, b, instance("payments", "p-0"))
	c.waitIDs(t, "[p-0 p-1 p-2]", waitFor)
	if _, err := cli.Delete(context.Background(), b.Key("payments", "p-0")); err != nil {
		t.Fatal(err)
	}
	c.waitIDs(t, "[p-1 p-2]", waitFor)
}

func TestWatchSkipsInvalidValues(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	register(t, b, instance("payments", "p-1"))
	ctx := context.Background()
	for key, value := range map[string]string{
		b.Key("payments", "garbage"): "not json",
		b.Key("payments", "invalid"): `{"service":"payments","id":"invalid","address":"nowhere"}`,
		b.Key("payments", "wrongid"): `{"service":"payments","id":"p-9","address":"127.0.0.1:1"}`,
	} {
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Resolve(ctx, "payments")
	if err != nil || ids(got) != "[p-1]" {
		t.Errorf("Resolve = %s, %v; want [p-1]", ids(got), err)
	}
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	register(t, b, instance("payments", "p-2"))
	if _, err := cli.Put(ctx, b.Key("payments", "garbage2"), "{"); err != nil {
		t.Fatal(err)
	}
	c.waitIDs(t, "[p-1 p-2]", waitFor)
}

// TestResolveAndWatchSkipKeysNotNamedByTheirID: a value is an instance of
// the service only under the key <Prefix>/<service>/<its ID>, with a
// non-empty ID. An instance with an empty ID under <Prefix>/<service>/
// (the key and the ID both empty) and values under keys with more
// segments are skipped with the usual warning, by Resolve, by Watch's
// first list and by its events.
func TestResolveAndWatchSkipKeysNotNamedByTheirID(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	logs := &linebuf.Buffer{}
	cfg := testConfig(t, srv.Endpoints())
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.MultiWriter(logs, testlog.Writer(t)), Level: hclog.Debug})
	b := newBackend(t, cfg)
	register(t, b, instance("payments", "p-1"))
	ctx := context.Background()
	emptyKey := b.Key("payments", "") // <Prefix>/payments/
	bad := map[string]string{
		emptyKey:                       `{"service":"payments","id":"","address":"127.0.0.1:9001"}`,
		b.Key("payments", "a/b"):       `{"service":"payments","id":"a/b","address":"127.0.0.1:9002"}`,
		b.Key("payments", "a/p-2"):     `{"service":"payments","id":"p-2","address":"127.0.0.1:9003"}`,
		b.Key("payments", "p-3/"):      `{"service":"payments","id":"p-3","address":"127.0.0.1:9004"}`,
		b.Key("payments", "") + "/p-4": `{"service":"payments","id":"p-4","address":"127.0.0.1:9005"}`,
	}
	for key, value := range bad {
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	want := []discovery.Instance{instance("payments", "p-1")}
	got, err := b.Resolve(ctx, "payments")
	if err != nil || !discovery.EqualSets(got, want) {
		t.Errorf("Resolve = %+v, %v; want only %+v", got, err, want)
	}

	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	// The same values again, as events of the watch, then a valid one.
	for key, value := range bad {
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	putRaw(t, cli, b, instance("payments", "p-5"))
	c.waitIDs(t, "[p-1 p-5]", waitFor)
	c.mu.Lock()
	for i, set := range c.sets {
		for _, in := range set {
			if in.ID != "p-1" && in.ID != "p-5" {
				t.Errorf("watch set %d holds %+v; want only p-1 and p-5", i, in)
			}
		}
	}
	c.mu.Unlock()
	for key := range bad {
		logs.WaitFor(t, fmt.Sprintf("skipping a value that is not a valid instance: key=%s ", key), waitFor)
	}
}

func TestWatchConvergesAfterCompactionWhileDisconnected(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	writer := newBackend(t, testConfig(t, srv.Endpoints()))
	reader := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	register(t, writer, instance("payments", "p-1"))
	register(t, writer, instance("payments", "p-2"))
	w, err := reader.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1 p-2]", waitFor)

	proxy.Blackhole()
	register(t, writer, instance("payments", "p-3"))
	if err := writer.Deregister(context.Background(), instance("payments", "p-1")); err != nil {
		t.Fatal(err)
	}
	compactNow(t, cli)
	if err := proxy.DropConnections(); err != nil {
		t.Fatal(err)
	}
	proxy.Unblackhole()
	c.waitIDs(t, "[p-2 p-3]", waitFor)
	register(t, writer, instance("payments", "p-4"))
	c.waitIDs(t, "[p-2 p-3 p-4]", waitFor)
}

func TestWatchSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	putRaw(t, cli, b, instance("payments", "p-1"))
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	putRaw(t, cli, b, instance("payments", "p-2"))
	c.waitIDs(t, "[p-1 p-2]", waitFor)
}

// history is every set the registry held, in order, as a writer made them.
type history struct {
	mu   sync.Mutex
	sets []string
}

func (h *history) add(set string) {
	h.mu.Lock()
	h.sets = append(h.sets, set)
	h.mu.Unlock()
}

// checkSubsequence asserts that a watcher's sets appear in the history in
// order, without repeats: nothing duplicated, nothing invented, nothing
// reordered.
func checkSubsequence(t *testing.T, seen [][]discovery.Instance, fresh []bool, h *history) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	i := 0
	for k, set := range seen {
		got := ids(set)
		if k > 0 && got == ids(seen[k-1]) && !fresh[k] {
			t.Errorf("set %d (%s) repeats the one before", k, got)
		}
		for i < len(h.sets) && h.sets[i] != got {
			i++
		}
		if i == len(h.sets) {
			t.Fatalf("set %d (%s) is not in the history after its predecessor; history %v", k, got, h.sets)
		}
	}
}

func TestWatchBurstThroughDroppedConnections(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	reader := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	w, err := reader.Watch(context.Background(), "burst")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[]", waitFor)

	// One writer adds b-00..b-49 one at a time; the set after each put is
	// known exactly.
	h := &history{}
	h.add("[]")
	var current []string
	for i := range 50 {
		in := instance("burst", fmt.Sprintf("b-%02d", i))
		putRaw(t, cli, reader, in)
		current = append(current, in.ID)
		h.add(fmt.Sprint(current))
		if i%10 == 5 {
			if err := proxy.DropConnections(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitIDs(t, fmt.Sprint(current), waitFor)
	c.mu.Lock()
	seen := append([][]discovery.Instance(nil), c.sets...)
	fresh := append([]bool(nil), c.fresh...)
	c.mu.Unlock()
	t.Logf("watcher saw %d of the %d sets", len(seen), len(h.sets))
	checkSubsequence(t, seen, fresh, h)
}

func TestWatchThroughLeaderKill(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.StartCluster(t, 3)
	cli := etcdtest.Client(t, cluster)
	b := newBackend(t, testConfig(t, cluster.Endpoints()))
	putRaw(t, cli, b, instance("payments", "p-1"))
	w, err := b.Watch(context.Background(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	leader, err := cluster.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Members()[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.WaitLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The test client may need a moment to fail over too.
	testwait.Until(t, waitFor, "a write after the leader change", func() bool {
		v, _ := json.Marshal(instance("payments", "p-2"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Put(ctx, b.Key("payments", "p-2"), string(v))
		return err == nil
	})
	c.waitIDs(t, "[p-1 p-2]", waitFor)
}

// Not parallel: it counts goroutines.
func TestThousandWatchersShareOneWatch(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	putRaw(t, cli, b, instance("payments", "p-1"))
	// Connect the backend's client and start its connection monitor first:
	// they stay for the life of the Backend.
	warm, err := b.Watch(context.Background(), "warm-up")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := warm.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	warm.Stop()
	before := clientGoroutines()
	watchesBefore := serverMetric(t, "etcd_debugging_mvcc_watcher_total", "", "")

	const n = 1000
	watchers := make([]discovery.Watcher, n)
	var first, done sync.WaitGroup
	for i := range watchers {
		w, err := b.Watch(context.Background(), "payments")
		if err != nil {
			t.Fatal(err)
		}
		watchers[i] = w
		first.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			set, err := w.Next(ctx)
			first.Done()
			if err != nil || ids(set) != "[p-1]" {
				t.Errorf("first Next = %s, %v", ids(set), err)
			}
			if set, err := w.Next(ctx); err != nil || ids(set) != "[p-1 p-2]" {
				t.Errorf("second Next = %s, %v", ids(set), err)
			}
		}()
	}
	first.Wait() // every watcher has the first set: the next one is news to all
	putRaw(t, cli, b, instance("payments", "p-2"))
	done.Wait()
	if got := serverMetric(t, "etcd_debugging_mvcc_watcher_total", "", "") - watchesBefore; got > 2 {
		t.Errorf("%v etcd watchers for %d local watchers; want 1 shared (plus the own-key watch)", got, n)
	}
	for _, w := range watchers {
		w.Stop()
	}
	deadline := time.Now().Add(waitFor)
	for clientGoroutines() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left after the watchers stopped (before: %d):\n%s",
				clientGoroutines(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResolveLinearizableAndSerializable(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.StartCluster(t, 3)
	cli := etcdtest.Client(t, cluster)
	// Written without a lease, so they outlive the quorum loss below.
	keys := newBackend(t, testConfig(t, cluster.Endpoints()))
	putRaw(t, cli, keys, instance("payments", "p-1"))
	putRaw(t, cli, keys, instance("payments", "p-0"))
	for _, serializable := range []bool{false, true} {
		cfg := testConfig(t, cluster.Endpoints())
		cfg.SerializableReads = serializable
		reader := newBackend(t, cfg)
		// A linearizable read sees every write that has returned; a
		// serializable one is answered by the member alone and may lag a
		// little, so it is waited for.
		var got []discovery.Instance
		testwait.Until(t, waitFor, "Resolve sees both instances", func() bool {
			var err error
			got, err = reader.Resolve(context.Background(), "payments")
			return err == nil && ids(got) == "[p-0 p-1]"
		})
		if !serializable {
			if got, err := reader.Resolve(context.Background(), "payments"); err != nil || ids(got) != "[p-0 p-1]" {
				t.Errorf("linearizable Resolve = %s, %v", ids(got), err)
			}
		}
	}
	// With the leader gone and no quorum, only a serializable read answers.
	members := cluster.Members()
	leader, err := cluster.Leader()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		if i != leader {
			if err := m.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, serializable := range []bool{false, true} {
		cfg := testConfig(t, members[leader].Endpoints())
		cfg.SerializableReads = serializable
		reader := newBackend(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, err := reader.Resolve(ctx, "payments")
		cancel()
		if serializable && (err != nil || ids(got) != "[p-0 p-1]") {
			t.Errorf("serializable Resolve without quorum = %s, %v; want the set", ids(got), err)
		}
		if !serializable && err == nil {
			t.Errorf("linearizable Resolve without quorum = %s; want an error", ids(got))
		}
	}
}
