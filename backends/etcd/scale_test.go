package etcd_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// serverMetric sums a counter of the etcd servers in this process (etcd
// registers its metrics globally), optionally only the series whose label
// has the given value.
func serverMetric(t testing.TB, name, label, value string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func registerMany(t testing.TB, b *etcd.Backend, n int) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				in := discovery.Instance{Service: fmt.Sprintf("svc-%d", i%10), ID: fmt.Sprintf("i-%04d", i),
					Address: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250)}
				if err := b.Register(context.Background(), in); err != nil {
					t.Errorf("Register: %v", err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// clientGoroutines counts the goroutines of this process that are not the
// embedded etcd server's: the server runs in the test process, but in
// production it is elsewhere.
func clientGoroutines() int {
	buf := make([]byte, 8<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "go.etcd.io/etcd/server/") && !strings.Contains(g, "http2Server") &&
			!strings.Contains(g, "cmux") && !strings.Contains(g, "(*Server).serve") {
			n++
		}
	}
	return n
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Not parallel: it counts the process's goroutines, heap and etcd's global
// metrics, which other tests would disturb.
func TestThousandInstancesShareOneLeaseAndStream(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Logger = nil // info logs only; not per instance
	cfg.TTL = 3 * time.Second

	// The application's client, connected: what roster adds is measured
	// from here.
	appClient, err := clientv3.New(etcd.ClientConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { appClient.Close() })
	if _, err := appClient.Get(context.Background(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	goroutinesBefore := clientGoroutines()
	heapBefore := heapInUse()
	streamsBefore := serverMetric(t, "grpc_server_started_total", "grpc_method", "LeaseKeepAlive")

	b, err := etcd.NewWithClient(appClient, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	registerMany(t, b, 1000)

	resp, err := cli.Get(context.Background(), "/roster/services/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1000 {
		t.Fatalf("etcd holds %d keys (%v); want 1000", resp.Count, err)
	}
	leases, err := cli.Leases(context.Background())
	if err != nil || len(leases.Leases) != 1 {
		t.Errorf("leases = %v (%v); want exactly one", leases.Leases, err)
	}

	// Two keep-alive rounds.
	renewedBefore := serverMetric(t, "etcd_debugging_lease_renewed_total", "", "")
	time.Sleep(cfg.TTL)
	renewed := serverMetric(t, "etcd_debugging_lease_renewed_total", "", "") - renewedBefore
	streams := serverMetric(t, "grpc_server_started_total", "grpc_method", "LeaseKeepAlive") - streamsBefore

	goroutines := clientGoroutines() - goroutinesBefore
	heap := int64(heapInUse()) - int64(heapBefore)
	t.Logf("1000 instances: %d keep-alive stream(s), %.0f renewals in %v, %d goroutines and %.2f MiB of heap added",
		int(streams), renewed, cfg.TTL, goroutines, float64(heap)/(1<<20))
	if streams != 1 {
		t.Errorf("%v keep-alive streams opened; want 1", streams)
	}
	// One lease renewed every TTL/3: about 3 renewals in a TTL.
	if renewed < 1 || renewed > 6 {
		t.Errorf("%v renewals in one TTL; want about 3 (one lease)", renewed)
	}
	if goroutines > 20 {
		t.Errorf("%d goroutines added; want at most 20", goroutines)
	}
	if heap > 3<<20 {
		t.Errorf("%.2f MiB of heap added; want at most 3 MiB", float64(heap)/(1<<20))
	}
}

// serverGauge reads a gauge of the etcd servers in this process.
func serverGauge(t testing.TB, name string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// watchesSettled waits until etcd has watchers watchers, none of them
// catching up (an own-key watch that resumes a key from its write is one
// until etcd's sync loop, every 100 ms, sends it that write again), and
// has counted every event it handed to a stream (pending back to
// pending): only then does etcd_debugging_mvcc_events_total hold every
// event the registrations cost.
func watchesSettled(t *testing.T, watchers, pending float64) {
	t.Helper()
	testwait.Until(t, waitFor, fmt.Sprintf("etcd has %v watchers, all caught up, every event sent", watchers), func() bool {
		return serverGauge(t, "etcd_debugging_mvcc_watcher_total") == watchers &&
			serverGauge(t, "etcd_debugging_mvcc_slow_watcher_total") == 0 &&
			serverGauge(t, "etcd_debugging_mvcc_pending_events_total") == pending
	})
}

// eventsPerRegistration starts n processes one after another under a
// fresh prefix, each a Backend with its own client that registers one
// instance, and then has each register a second one. It returns the watch
// events etcd sent per registration in each round, counted once etcd has
// sent them all (watchesSettled): each own key has one etcd watcher.
func eventsPerRegistration(t *testing.T, srv *etcdtest.Server, n int) (first, second float64) {
	t.Helper()
	prefix := fmt.Sprintf("/fleet-%d", n)
	watchers := serverGauge(t, "etcd_debugging_mvcc_watcher_total")
	pending := serverGauge(t, "etcd_debugging_mvcc_pending_events_total")
	before := serverMetric(t, "etcd_debugging_mvcc_events_total", "", "")
	backends := make([]*etcd.Backend, n)
	for i := range backends {
		cfg := testConfig(t, srv.Endpoints())
		cfg.Logger = nil
		cfg.Prefix = prefix
		backends[i] = newBackend(t, cfg)
		register(t, backends[i], discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%03d", i),
			Address: fmt.Sprintf("10.0.0.%d:8080", i)})
	}
	watchesSettled(t, watchers+float64(n), pending)
	middle := serverMetric(t, "etcd_debugging_mvcc_events_total", "", "")
	for i, b := range backends {
		register(t, b, discovery.Instance{Service: "orders", ID: fmt.Sprintf("o-%03d", i),
			Address: fmt.Sprintf("10.0.1.%d:8080", i)})
	}
	watchesSettled(t, watchers+float64(2*n), pending)
	after := serverMetric(t, "etcd_debugging_mvcc_events_total", "", "")
	return (middle - before) / float64(n), (after - middle) / float64(n)
}

// Not parallel: it reads etcd's global metrics. A process must learn of
// changes to its own keys only: the events etcd sends per registration do
// not depend on how many other processes share the prefix (with a watch
// over the whole prefix they grew linearly: 4.5 at 10, 19.5 at 40).
//
// A process's first registration costs at most one event, the echo of its
// own write: the keeper's write and the own-key watch's first stream start
// together, and a key written before the stream opens is resumed from that
// write, which etcd must send again (the check of keywatch.go against an
// etcd restored meanwhile). Which comes first is a race, so the first
// round is bounded, not compared. Later registrations, with the stream
// open, are watched from after their write: they cost the same at every
// fleet size, nothing.
func TestEventsPerRegistrationDoNotGrowWithTheFleet(t *testing.T) {
	srv := etcdtest.Start(t)
	// A watcher that has to catch up (from revision 1) has etcd's sync
	// loop run, which sets the gauge of watchers catching up to this
	// server's count: an etcd stopped by an earlier test may have left it
	// at another.
	cli := etcdtest.Client(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sentinel := cli.Watch(ctx, "/sentinel", clientv3.WithRev(1), clientv3.WithCreatedNotify())
	if resp := <-sentinel; !resp.Created {
		t.Fatalf("sentinel watch: %v", resp.Err())
	}
	testwait.Until(t, waitFor, "no watcher catching up", func() bool {
		return serverGauge(t, "etcd_debugging_mvcc_slow_watcher_total") == 0
	})

	small1, small2 := eventsPerRegistration(t, srv, 10)
	large1, large2 := eventsPerRegistration(t, srv, 50)
	t.Logf("watch events per registration: first %.2f at 10 processes, %.2f at 50; second %.2f at 10, %.2f at 50",
		small1, large1, small2, large2)
	if small1 > 1 || large1 > 1 {
		t.Errorf("watch events per first registration: %.2f at 10 processes, %.2f at 50; want at most 1", small1, large1)
	}
	if small2 != large2 || large2 > 1 {
		t.Errorf("watch events per second registration: %.2f at 10 processes, %.2f at 50; want the same, at most 1", small2, large2)
	}
}

// requestCounts reads etcd's count of handled requests, by method.
func requestCounts(t *testing.T, methods ...string) map[string]float64 {
	out := make(map[string]float64, len(methods))
	for _, m := range methods {
		out[m] = serverMetric(t, "grpc_server_handled_total", "grpc_method", m)
	}
	return out
}

// Not parallel: it reads etcd's global metrics. Back from an outage longer
// than the TTL, in which etcd kept the lease (it does through a restart),
// a process spends two requests to recover: it asks etcd to grant the
// lease again, is refused and keeps the lease, and reads its keys in one
// read-only transaction (a refused grant does not prove the keys are
// there: an etcd restored from a backup has the lease without the keys
// written after the backup). It reads the keys, not the lease: a follower
// forwards every lease read to the leader over HTTP, which a loaded
// cluster answers seconds late after a restart (issue #21). It writes
// nothing.
func TestRecoveryWithASurvivingLeaseCostsTwoRequests(t *testing.T) {
	methods := []string{"LeaseTimeToLive", "LeaseGrant", "LeaseRevoke", "Txn", "Put", "DeleteRange", "Range"}
	srv := etcdtest.Start(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.RequestTimeout = 300 * time.Millisecond
	b := newBackend(t, cfg)
	states := recordStates(t, b)
	register(t, b, instance("payments", "p-1"))
	register(t, b, instance("payments", "p-2"))
	lease := b.Lease()

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	states.waitState(t, discovery.StateRetrying, cfg.TTL+waitFor) // the keep-alive timed out
	before := requestCounts(t, methods...)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	states.waitState(t, discovery.StateRegistered, waitFor)
	testwait.Until(t, waitFor, "both instances are registered", func() bool {
		for _, st := range b.Statuses() {
			if st.State != discovery.StateRegistered {
				return false
			}
		}
		return true
	})
	after := requestCounts(t, methods...)
	want := map[string]float64{"LeaseGrant": 1, "Txn": 1} // refused: etcd still has it; then the check
	for _, m := range methods {
		if got := after[m] - before[m]; got != want[m] {
			t.Errorf("%s requests to recover: %v; want %v", m, got, want[m])
		}
	}
	if b.Lease() != lease {
		t.Errorf("lease = %x after recovery; want the surviving %x", b.Lease(), lease)
	}
}

// Not parallel: it reads etcd's global metrics. Cut off from a running
// etcd for longer than the TTL, the process finds its lease expired: two
// requests recover it, one grant of the lease again under its ID and one
// transaction for both instances, and nothing is read.
func TestRecoveryWithAnExpiredLeaseCostsTwoRequests(t *testing.T) {
	methods := []string{"LeaseTimeToLive", "LeaseGrant", "LeaseRevoke", "Txn", "Put", "DeleteRange", "Range"}
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.RequestTimeout = 300 * time.Millisecond
	b := newBackend(t, cfg)
	states := recordStates(t, b)
	register(t, b, instance("payments", "p-1"))
	register(t, b, instance("payments", "p-2"))
	lease := b.Lease()

	proxy.Reject()
	testwait.Until(t, cfg.TTL+waitFor, "etcd expires the lease and its keys", func() bool {
		resp, err := cli.TimeToLive(context.Background(), lease)
		return err == nil && resp.TTL == -1
	})
	states.waitState(t, discovery.StateRetrying, waitFor)
	before := requestCounts(t, methods...)
	proxy.Accept()
	testwait.Until(t, waitFor, "both instances are registered", func() bool {
		for _, st := range b.Statuses() {
			if st.State != discovery.StateRegistered {
				return false
			}
		}
		return true
	})
	after := requestCounts(t, methods...)
	want := map[string]float64{"LeaseGrant": 1, "Txn": 1}
	for _, m := range methods {
		if got := after[m] - before[m]; got != want[m] {
			t.Errorf("%s requests to recover: %v; want %v", m, got, want[m])
		}
	}
	for _, id := range []string{"p-1", "p-2"} {
		if got := keyLease(cli, b.Key("payments", id)); got != lease {
			t.Errorf("%s is under lease %x; want %x, granted again", id, got, lease)
		}
	}
}

// Not parallel: it reads etcd's global metrics. A lease just granted has
// its whole TTL: the first keep-alive comes a third of the TTL later, not
// at once (clientv3's KeepAlive sends one at once, a request per
// registration and per recovery for nothing), and the keep-alives that
// follow keep the lease for several TTLs.
func TestFirstKeepAliveComesAThirdOfTheTTLAfterTheGrant(t *testing.T) {
	srv := etcdtest.Start(t)
	cfg := testConfig(t, srv.Endpoints())
	b := newBackend(t, cfg)
	keepAlives := func() float64 {
		return serverMetric(t, "grpc_server_msg_received_total", "grpc_method", "LeaseKeepAlive")
	}
	before := keepAlives()
	register(t, b, instance("payments", "p-1"))
	registered := time.Now()
	testwait.Until(t, waitFor, "the first keep-alive", func() bool { return keepAlives() > before })
	if took := time.Since(registered); took < cfg.TTL/6 {
		t.Errorf("first keep-alive %v after Register returned; want about TTL/3 = %v after the grant", took, cfg.TTL/3)
	}
	lease := b.Lease()
	cli := etcdtest.Client(t, srv)
	deadline := time.Now().Add(3 * cfg.TTL)
	for time.Now().Before(deadline) {
		resp, err := cli.TimeToLive(context.Background(), lease)
		if err != nil || resp.TTL <= 0 {
			t.Fatalf("lease %x: %v, %v; want it kept alive", lease, resp, err)
		}
		time.Sleep(cfg.TTL / 4)
	}
	// One keep-alive per third of the TTL, give or take one.
	if n := keepAlives() - before; n < 8 || n > 11 {
		t.Errorf("%v keep-alives in 3 TTLs and a third; want about 10", n)
	}
}
