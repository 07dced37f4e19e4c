package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// Tests of issue #15: defects that cost a process its registrations, or
// left an abandoned value in etcd.

// bigInstance carries about 60 KiB of metadata: 30 of them are more than
// etcd accepts in one request (1.5 MiB by default).
func bigInstance(i int) discovery.Instance {
	in := instance("payments", fmt.Sprintf("p-%02d", i))
	in.Metadata = map[string]string{"blob": strings.Repeat(string(rune('a'+i%26)), 60<<10)}
	return in
}

// countKeys returns how many keys the backend's prefix holds for the
// service, or -1 if etcd did not answer.
func countKeys(cli *clientv3.Client, service string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, etcd.DefaultPrefix+"/"+service+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return -1
	}
	return resp.Count
}

// A restore of many large instances is more than one request can carry: it
// is split by bytes, and every instance comes back under the same lease.
func TestLargeInstancesAreRestoredInBatchesThatFit(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.RequestTimeout = heavyRequestTimeout
	b := newBackend(t, cfg)
	const n = 30
	for i := range n {
		register(t, b, bigInstance(i))
	}
	lease := b.Lease()

	// An operator deletes them all at once.
	if _, err := cli.Delete(context.Background(), etcd.DefaultPrefix+"/payments/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	// Restored in etcd, and then reported registered: the status follows
	// the answer to the write, which a loaded machine may deliver after
	// the key is already visible to another client.
	testwait.Until(t, heavyWait, "every instance is restored and reported registered", func() bool {
		if countKeys(cli, "payments") != n {
			return false
		}
		for i := range n {
			in := bigInstance(i)
			if st, err := b.Status(in.Service, in.ID); err != nil || st.State != discovery.StateRegistered {
				return false
			}
		}
		return true
	})
	for i := range n {
		in := bigInstance(i)
		if got := keyLease(cli, b.Key(in.Service, in.ID)); got != lease {
			t.Errorf("%v is under lease %x; want the unchanged lease %x", in.Key(), got, lease)
		}
	}
	if got := b.Lease(); got != lease {
		t.Errorf("lease = %x; want unchanged %x: the keep-alive must not stop", got, lease)
	}
}

// Under etcd's NOSPACE alarm writes are refused; an instance that cannot
// be written waits and retries, and the instances already registered stay.
func TestNoSpaceKeepsEveryRegisteredInstance(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.WithQuotaBackendBytes(2<<20))
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.TTL = 3 * time.Second
	b := newBackend(t, cfg)
	for i := range 3 {
		register(t, b, instance("payments", fmt.Sprintf("p-%d", i)))
	}
	lease := b.Lease()
	states := recordStates(t, b)

	// Fill etcd until it raises the alarm.
	filler := strings.Repeat("x", 60<<10)
	for i := 0; ; i++ {
		_, err := cli.Put(context.Background(), fmt.Sprintf("/filler/%d", i), filler)
		if err != nil {
			if !strings.Contains(err.Error(), "database space exceeded") {
				t.Fatalf("filling etcd: %v", err)
			}
			break
		}
		if i > 1000 {
			t.Fatal("etcd never ran out of space")
		}
	}
	p := pollKey(t, cli, b.Key("payments", "p-0"))

	extra := instance("payments", "p-extra")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		done <- b.Register(ctx, extra)
	}()
	// The new instance is refused, with the cause, and retried.
	testwait.Until(t, waitFor, "the new instance reports retrying with NOSPACE", func() bool {
		st, err := b.Status("payments", "p-extra")
		return err == nil && st.State == discovery.StateRetrying && st.Err != nil &&
			strings.Contains(st.Err.Error(), "database space exceeded") && st.RetryIn > 0
	})
	// Keep it so for more than a TTL: the others stay present and
	// registered, under the same lease.
	until := time.Now().Add(cfg.TTL + time.Second)
	for time.Now().Before(until) {
		if n := countKeys(cli, "payments"); n != 3 {
			t.Fatalf("etcd holds %d instances during NOSPACE; want the 3 registered", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 3 {
		st, _ := b.Status("payments", fmt.Sprintf("p-%d", i))
		if st.State != discovery.StateRegistered {
			t.Errorf("p-%d is %v during NOSPACE; want registered", i, st)
		}
	}
	if b.Lease() != lease {
		t.Errorf("lease changed from %x to %x during NOSPACE", lease, b.Lease())
	}

	// Free the space and disarm the alarm: the new instance registers.
	if _, err := cli.Delete(context.Background(), "/filler/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(context.Background(), "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(context.Background(), srv.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	// The zero AlarmMember disarms every alarm of every member.
	alarms, err := cli.AlarmDisarm(context.Background(), &clientv3.AlarmMember{})
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != etcdserverpb.AlarmType_NOSPACE {
		t.Fatalf("disarmed %v; want the NOSPACE alarm", alarms.Alarms)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Register after the alarm was disarmed: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Register did not return after the alarm was disarmed")
	}
	p.halt()
	if n := p.absent.Load(); n != 0 {
		t.Errorf("a registered key was absent in %d of %d polls; want present throughout", n, p.ok.Load())
	}
	for _, st := range b.Statuses() {
		if st.State != discovery.StateRegistered {
			t.Errorf("%v; want every instance registered", st)
		}
	}
	if n := countKeys(cli, "payments"); n != 4 {
		t.Errorf("etcd holds %d instances; want 4", n)
	}
	if !subsequence(states.states(), []discovery.State{discovery.StateRetrying, discovery.StateRegistered}) {
		t.Errorf("states = %v; want retrying, then registered", states.states())
	}
}

// Register(v1) waits behind another write; Register(v2) replaces it; v2's
// context ends while v2's write is in flight, and the write succeeds. etcd
// must end up with v1, and Register(v1) must return.
func TestAbandonedUpdateRevertsToThePreviousValue(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	register(t, b, instance("other", "o-1")) // a live lease: Register writes on its own goroutine

	const latency = 300 * time.Millisecond // each way: a write takes 600 ms or more
	proxy.SetLatency(latency)
	t.Cleanup(func() { proxy.SetLatency(0) })
	start := time.Now()
	ahead := make(chan error, 1)
	go func() { ahead <- b.Register(context.Background(), instance("other", "o-2")) }()
	// o-2's write is in flight when v1 and v2 arrive.
	testwait.Until(t, waitFor, "o-2 is registering", func() bool {
		st, err := b.Status("other", "o-2")
		return err == nil && st.State == discovery.StateRegistering
	})
	v1 := instance("payments", "p-1")
	v1.Metadata = map[string]string{"version": "1"}
	v2 := instance("payments", "p-1")
	v2.Metadata = map[string]string{"version": "2"}
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		first <- b.Register(ctx, v1)
	}()
	testwait.Until(t, waitFor, "v1 is registering", func() bool {
		st, err := b.Status("payments", "p-1")
		return err == nil && st.State == discovery.StateRegistering
	})
	// v2 gives up after o-2's write and while its own is in flight.
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(3*latency))
	defer cancel()
	if err := b.Register(ctx, v2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register(v2) = %v; want its deadline exceeded (the write takes longer)", err)
	}
	if err := <-ahead; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("Register(v1) = %v; want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Register(v1) is still blocked after v2 was abandoned")
	}
	proxy.SetLatency(0)
	testwait.Until(t, waitFor, "etcd holds v1", func() bool {
		resp, err := getKey(cli, b.Key("payments", "p-1"), time.Second)
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"version":"1"`)
	})
	st, err := b.Status("payments", "p-1")
	if err != nil || st.State != discovery.StateRegistered || st.Instance.Metadata["version"] != "1" {
		t.Errorf("status = %v (%v), metadata %v; want registered with v1", st, err, st.Instance.Metadata)
	}
}

// An instance in conflict reports conflict again once an outage is over,
// not retrying forever.
func TestConflictIsReportedAfterAnOutage(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	a := newBackend(t, testConfig(t, srv.Endpoints()))
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	in := instance("payments", "p-1")
	register(t, a, in)
	aStates := recordStates(t, a)
	bStates := recordStates(t, b)
	register(t, b, in) // the later writer owns the key
	aStates.waitState(t, discovery.StateConflict, waitFor)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// Longer than the TTL: both keep-alives time out.
	bStates.waitState(t, discovery.StateRetrying, testTTL+waitFor)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	var owner, other *etcd.Backend
	testwait.Until(t, waitFor, "one backend owns the key and the other reports conflict", func() bool {
		sa, _ := a.Status("payments", "p-1")
		sb, _ := b.Status("payments", "p-1")
		switch {
		case sa.State == discovery.StateRegistered && sb.State == discovery.StateConflict:
			owner, other = a, b
		case sb.State == discovery.StateRegistered && sa.State == discovery.StateConflict:
			owner, other = b, a
		default:
			return false
		}
		return true
	})
	if got := keyLease(cli, owner.Key("payments", "p-1")); got != owner.Lease() {
		t.Errorf("key is under lease %x; want the owner's %x", got, owner.Lease())
	}
	st, _ := other.Status("payments", "p-1")
	if !errors.Is(st.Err, discovery.ErrConflict) {
		t.Errorf("conflict status error = %v; want ErrConflict", st.Err)
	}
}

// A Backend that holds nothing keeps no lease alive: not after an
// abandoned Register, not after the last Deregister.
func TestNoLeaseIsKeptForNothing(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	noLeases := func() bool {
		resp, err := cli.Leases(context.Background())
		return err == nil && len(resp.Leases) == 0 && b.Lease() == 0
	}

	// The only Register is abandoned while its writes cannot get through.
	proxy.SetLatency(400 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := b.Register(ctx, instance("payments", "p-1"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register = %v; want its deadline exceeded", err)
	}
	proxy.SetLatency(0)
	testwait.Until(t, waitFor, "no lease left after the abandoned Register", noLeases)
	if n := countKeys(cli, "payments"); n != 0 {
		t.Errorf("etcd holds %d instances after an abandoned Register; want 0", n)
	}

	// Register and Deregister: the lease goes with the last instance, and
	// the next Register gets a new one.
	in := instance("payments", "p-2")
	register(t, b, in)
	if err := b.Deregister(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, waitFor, "no lease left after the last Deregister", noLeases)
	register(t, b, in)
	if b.Lease() == 0 || keyLease(cli, b.Key("payments", "p-2")) != b.Lease() {
		t.Errorf("after registering again the key is under %x; want the new lease %x",
			keyLease(cli, b.Key("payments", "p-2")), b.Lease())
	}
}

// Close cannot revoke the lease while etcd is unreachable: a Deregister
// still waiting is told its key stays, rather than that it is gone.
func TestCloseReportsAFailedRevokeToPendingDeregister(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.RequestTimeout = 300 * time.Millisecond
	b, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in := instance("payments", "p-1")
	register(t, b, in)
	proxy.Blackhole()
	t.Cleanup(proxy.Unblackhole)
	deregistered := make(chan error, 1)
	go func() { deregistered <- b.Deregister(context.Background(), in) }()
	testwait.Until(t, waitFor, "Deregister is pending", func() bool {
		st, err := b.Status("payments", "p-1")
		return err != nil || st.State == discovery.StateDeregistered
	})
	if err := b.Close(); err == nil {
		t.Error("Close = nil; want the failed revoke")
	}
	select {
	case err := <-deregistered:
		if err == nil || !strings.Contains(err.Error(), "stays until its lease expires") {
			t.Errorf("pending Deregister = %v; want an error saying the key stays until its lease expires", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Deregister still blocked after Close")
	}
}

// A key deleted while the own-key watch was cut off, with its history
// compacted before the watch returned, is restored all the same.
func TestOwnKeyRestoredAfterCompactionWhileDisconnected(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.TTL = 10 * time.Second // the lease survives the cut
	b := newBackend(t, cfg)
	in := instance("payments", "p-1")
	register(t, b, in)
	lease := b.Lease()

	proxy.Blackhole()
	if _, err := cli.Delete(context.Background(), b.Key("payments", "p-1")); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(context.Background(), "/elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if err := proxy.DropConnections(); err != nil {
		t.Fatal(err)
	}
	proxy.Unblackhole()
	testwait.Until(t, waitFor, "the deleted key is restored", func() bool {
		return keyLease(cli, b.Key("payments", "p-1")) == lease
	})
}

// More than one transaction's worth of instances (128) re-registered
// after their lease was revoked: every one is restored, and each is
// followed again, so a later delete of any of them is restored too.
func TestManyInstancesRestoredAfterRevoke(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Logger = nil
	cfg.RequestTimeout = heavyRequestTimeout
	b := newBackend(t, cfg)
	const n = 300
	for i := range n {
		register(t, b, instance("payments", fmt.Sprintf("p-%03d", i)))
	}
	if _, err := cli.Revoke(context.Background(), b.Lease()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, heavyWait, "every instance is restored", func() bool { return countKeys(cli, "payments") == n })
	for _, i := range []int{0, 150, n - 1} {
		key := b.Key("payments", fmt.Sprintf("p-%03d", i))
		testwait.Until(t, waitFor, "the key is under the new lease", func() bool {
			l := keyLease(cli, key)
			return l != 0 && l == b.Lease()
		})
		if _, err := cli.Delete(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, waitFor, "a key deleted later is restored", func() bool { return keyLease(cli, key) == b.Lease() })
	}
}
