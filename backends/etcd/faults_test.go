package etcd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/linebuf"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// poller reads a key every 20 ms through its own client and counts the
// reads that succeeded and found the key absent; present is when the last
// read that found the key started (Unix nanoseconds).
type poller struct {
	ok, absent atomic.Int64
	present    atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func pollKey(t *testing.T, cli *clientv3.Client, key string) *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			start := time.Now()
			resp, err := getKey(cli, key, 200*time.Millisecond)
			if err != nil {
				continue
			}
			p.ok.Add(1)
			if len(resp.Kvs) == 0 {
				p.absent.Add(1)
				t.Logf("poll at %v: key absent", time.Now().Format("15:04:05.000"))
			} else {
				p.present.Store(start.UnixNano())
			}
		}
	}()
	t.Cleanup(p.halt)
	return p
}

// presentAfter reports whether a read that started after t found the key.
func (p *poller) presentAfter(t time.Time) bool {
	return p.present.Load() > t.UnixNano()
}

func (p *poller) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// outage stops etcd until the backend has been retrying for at least down,
// restarts it, and returns how long after etcd accepted requests again the
// registration was back.
func outage(t *testing.T, policy retry.Policy, down time.Duration) {
	srv := etcdtest.Start(t)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Retry = policy
	// Attempts fail fast, so the backend spends the outage asleep between
	// them, as it does with the production defaults.
	cfg.RequestTimeout = 300 * time.Millisecond
	logs := &linebuf.Buffer{}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: io.MultiWriter(logs, testlog.Writer(t)), Level: hclog.Info})
	b := newBackend(t, cfg)
	states := recordStates(t, b)
	in := instance("payments", "p-1")
	register(t, b, in)
	states.waitState(t, discovery.StateRegistered, waitFor)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	states.waitState(t, discovery.StateRetrying, cfg.TTL+waitFor)
	for time.Since(stopped) < down {
		time.Sleep(50 * time.Millisecond)
	}
	last := states.statuses()[len(states.statuses())-1]
	if last.State != discovery.StateRetrying || last.Attempt < 1 || last.RetryIn <= 0 || last.Err == nil {
		t.Errorf("retrying status = %+v; want attempt, delay and cause", last)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now() // Restart returns once etcd serves requests
	states.waitState(t, discovery.StateRegistered, waitFor)
	recovered := time.Since(back)
	t.Logf("registration back %v after etcd returned (outage %v)", recovered, time.Since(stopped)-recovered)
	if recovered > time.Second {
		t.Errorf("registration back %v after etcd returned; want within 1s", recovered)
	}
	if !subsequence(states.states(), []discovery.State{discovery.StateRegistered, discovery.StateRetrying, discovery.StateRegistered}) {
		t.Errorf("states = %v; want registered, retrying, registered", states.states())
	}
	resp, err := getKey(etcdtest.Client(t, srv), b.Key("payments", "p-1"), time.Second)
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != b.Lease() {
		t.Errorf("key after recovery = %v, %v; want it under lease %x", resp, err, b.Lease())
	}
	// The story an operator reads: the lost keep-alive with its lease and
	// instance count, each retry with its cause and delay, then the lease
	// the instances are registered under again.
	lease := fmt.Sprintf("lease=%x", int64(b.Lease()))
	retrying := "[WARN]  " + t.Name() + ".roster.etcd: failed to maintain lease, retrying: node=127.0.0.1:8080 instances=1 attempt=1 retry_in="
	linebuf.WantInOrder(t, logs.String(),
		"[WARN]  "+t.Name()+".roster.etcd: keep-alive failed, will retry: "+lease+" instances=1",
		retrying,
		"[INFO]  "+t.Name()+".roster.etcd: registered: node=127.0.0.1:8080 instances=1 "+lease)
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, retrying) && !strings.Contains(line, ` error="no connection to etcd at `) {
			t.Errorf("retry warning %q does not give the cause", line)
		}
	}
}

func TestEtcdDownThreeTimesRetryCap(t *testing.T) {
	t.Parallel()
	// The retry delay reaches its 3 s cap long before etcd returns; recovery
	// must not wait for the rest of it.
	const retryCap = 3 * time.Second
	outage(t, retry.Policy{Base: time.Second, Max: retryCap, Jitter: 0.2}, 3*retryCap+testTTL)
}

func TestBlackholeLongerThanTTL(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	states := recordStates(t, b)
	key := b.Key("payments", "p-1")
	register(t, b, instance("payments", "p-1"))
	lease := b.Lease()
	resp, err := getKey(cli, key, time.Second)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key after Register: %v, %v", resp, err)
	}
	created := resp.Kvs[0].CreateRevision

	proxy.Blackhole()
	// Server up, traffic dropped: etcd expires the lease and the key.
	testwait.Until(t, testTTL+waitFor, "etcd expires the key", func() bool {
		resp, err := getKey(cli, key, time.Second)
		return err == nil && len(resp.Kvs) == 0
	})
	states.waitState(t, discovery.StateRetrying, waitFor)
	proxy.Unblackhole()
	healed := time.Now()
	testwait.Until(t, waitFor, "the key is back", func() bool { return keyLease(cli, key) != 0 })
	t.Logf("key back %v after the cut healed", time.Since(healed))
	// etcd granted the expired lease again, under the same ID, and the key
	// was written anew under it.
	if got := keyLease(cli, key); got != lease || got != b.Lease() {
		t.Errorf("key lease = %x; want the lease granted again (old %x, backend %x)", got, lease, b.Lease())
	}
	if resp, err := getKey(cli, key, time.Second); err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision <= created {
		t.Errorf("key after the cut: %v, %v; want it created after revision %d", resp, err, created)
	}
	states.waitState(t, discovery.StateRegistered, waitFor)
}

func TestExternalRevokeIsRestored(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	key := b.Key("payments", "p-1")
	register(t, b, instance("payments", "p-1"))
	register(t, b, instance("orders", "o-1"))
	old := b.Lease()

	revoked := time.Now()
	resp, err := cli.Revoke(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	// The revoke deleted both keys at its revision; they come back under
	// the lease granted again, with its ID.
	testwait.Until(t, waitFor, "both keys are back under the lease granted again", func() bool {
		for _, k := range []string{key, b.Key("orders", "o-1")} {
			got, err := getKey(cli, k, time.Second)
			if err != nil || len(got.Kvs) != 1 || got.Kvs[0].CreateRevision <= resp.Header.Revision ||
				clientv3.LeaseID(got.Kvs[0].Lease) != old {
				return false
			}
		}
		return true
	})
	took := time.Since(revoked)
	t.Logf("restored %v after the revoke", took)
	if took > 500*time.Millisecond {
		t.Errorf("restored after %v; want within 0.5s", took)
	}
}

func TestClusterLeaderKilled(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.StartCluster(t, 3)
	cfg := testConfig(t, cluster.Endpoints())
	cfg.TTL = 3 * time.Second
	b := newBackend(t, cfg)
	key := b.Key("payments", "p-1")
	register(t, b, instance("payments", "p-1"))
	p := pollKey(t, etcdtest.Client(t, cluster), key)

	// Kill, not Stop: a crashed leader hands nothing over.
	killed, err := cluster.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Members()[killed].Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader member %d", killed)
	if _, err := cluster.WaitLeader(context.Background()); err != nil {
		t.Fatal(err)
	}
	okBefore := p.ok.Load()
	// Keep polling until a read finds the key two TTLs after the leader
	// change, when an unrenewed lease would have expired.
	expired := time.Now().Add(2 * cfg.TTL)
	testwait.Until(t, 2*cfg.TTL+waitFor, "a read two TTLs after the leader change finds the key", func() bool { return p.presentAfter(expired) })
	p.halt()
	if n := p.absent.Load(); n != 0 {
		t.Errorf("key absent in %d of %d polls; want never", n, p.ok.Load())
	}
	if p.ok.Load()-okBefore < 10 {
		t.Errorf("only %d successful polls after the leader change", p.ok.Load()-okBefore)
	}
	st, err := b.Status("payments", "p-1")
	if err != nil || st.State != discovery.StateRegistered {
		t.Errorf("status = %v, %v; want registered", st, err)
	}
}

// TestConnectAttemptsDuringAnOutageAreFew points a backend at an address
// where nothing speaks etcd (connections are accepted and closed at once)
// and counts its connection attempts: with the default ReconnectDelay
// (800 ms, ±20%) about one a second, so a fleet coming back does not
// stampede etcd.
func TestConnectAttemptsDuringAnOutageAreFew(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			conn.Close()
		}
	}()
	defer func() { lis.Close(); <-accepted }()

	cfg := testConfig(t, []string{lis.Addr().String()})
	cfg.ReconnectDelay = 0 // the default
	b := newBackend(t, cfg)
	const window = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	start := time.Now()
	if err := b.Register(ctx, instance("payments", "p-1")); err == nil {
		t.Fatal("Register succeeded against an address that does not speak etcd")
	}
	elapsed := time.Since(start)
	n := attempts.Load()
	rate := float64(n) / elapsed.Seconds()
	t.Logf("%d connection attempts in %v (%.2f/s)", n, elapsed.Round(time.Millisecond), rate)
	if n < 3 || rate > 1.6 {
		t.Errorf("%d connection attempts in %v; want about one a second (at least 3, at most 1.6/s)", n, elapsed)
	}
}
