package etcd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

func TestRegisterWritesKeyUnderLease(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	in := instance("payments", "p-1")
	register(t, b, in)

	resp, err := getKey(cli, "/roster/services/payments/p-1", waitFor)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("Get = %v, %v; want the key", resp, err)
	}
	kv := resp.Kvs[0]
	var got discovery.Instance
	if err := json.Unmarshal(kv.Value, &got); err != nil || !got.Equal(in) {
		t.Errorf("value = %s (%v), want %+v", kv.Value, err, in)
	}
	if lease := b.Lease(); clientv3.LeaseID(kv.Lease) != lease || lease == 0 {
		t.Errorf("key lease = %x, backend lease = %x", kv.Lease, lease)
	}
	ttl, err := cli.TimeToLive(context.Background(), b.Lease())
	if err != nil || ttl.GrantedTTL != int64(testTTL.Seconds()) {
		t.Errorf("TimeToLive = %+v, %v; want granted TTL %v", ttl, err, testTTL)
	}
	st, err := b.Status("payments", "p-1")
	if err != nil || st.State != discovery.StateRegistered {
		t.Errorf("Status = %v, %v; want registered", st, err)
	}
}

func TestOneLeaseForAllInstances(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	for i := range 5 {
		register(t, b, instance(fmt.Sprintf("svc-%d", i%2), fmt.Sprintf("i-%d", i)))
	}
	resp, err := cli.Get(context.Background(), "/roster/services/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 5 {
		t.Fatalf("Get = %v keys, %v; want 5", len(resp.Kvs), err)
	}
	for _, kv := range resp.Kvs {
		if clientv3.LeaseID(kv.Lease) != b.Lease() {
			t.Errorf("%s has lease %x, want %x", kv.Key, kv.Lease, b.Lease())
		}
	}
	leases, err := cli.Leases(context.Background())
	if err != nil || len(leases.Leases) != 1 {
		t.Errorf("Leases = %v, %v; want exactly one", leases, err)
	}
}

func TestReregisterUpdatesInPlace(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	in := instance("payments", "p-1")
	register(t, b, in)
	first, _ := getKey(cli, b.Key("payments", "p-1"), time.Second)
	in.Metadata = map[string]string{"zone": "b", "version": "2"}
	register(t, b, in)
	second, err := getKey(cli, b.Key("payments", "p-1"), time.Second)
	if err != nil || len(second.Kvs) != 1 {
		t.Fatalf("Get: %v", err)
	}
	var got discovery.Instance
	_ = json.Unmarshal(second.Kvs[0].Value, &got)
	if !got.Equal(in) {
		t.Errorf("value = %+v, want %+v", got, in)
	}
	if c1, c2 := first.Kvs[0].CreateRevision, second.Kvs[0].CreateRevision; c1 != c2 {
		t.Errorf("CreateRevision changed from %d to %d: the key was recreated, not updated", c1, c2)
	}
	if second.Kvs[0].Lease != first.Kvs[0].Lease {
		t.Errorf("lease changed from %x to %x", first.Kvs[0].Lease, second.Kvs[0].Lease)
	}
}

func TestEmptyIDIsDerivedFromAddress(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	register(t, b, discovery.Instance{Service: "web", Address: "10.0.0.7:8080"})
	if resp, err := getKey(cli, "/roster/services/web/10.0.0.7-8080", time.Second); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("derived key missing: %v, %v", resp, err)
	}
	if err := b.Deregister(context.Background(), discovery.Instance{Service: "web", Address: "10.0.0.7:8080"}); err != nil {
		t.Fatalf("Deregister by address: %v", err)
	}
}

func TestInvalidInstanceWritesNothing(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	cases := []struct {
		name  string
		in    discovery.Instance
		field string
	}{
		{"empty service", discovery.Instance{Address: "127.0.0.1:1"}, "Service"},
		{"slash in service", discovery.Instance{Service: "a/b", Address: "127.0.0.1:1"}, "Service"},
		{"dotdot id", discovery.Instance{Service: "a", ID: "..", Address: "127.0.0.1:1"}, "ID"},
		{"slash in id", discovery.Instance{Service: "a", ID: "../../x", Address: "127.0.0.1:1"}, "ID"},
		{"no port", discovery.Instance{Service: "a", Address: "127.0.0.1"}, "Address"},
		{"port 0", discovery.Instance{Service: "a", Address: "127.0.0.1:0"}, "Address"},
		{"huge metadata", discovery.Instance{Service: "a", Address: "127.0.0.1:1",
			Metadata: map[string]string{"k": strings.Repeat("x", 70<<10)}}, "Metadata"},
	}
	for _, c := range cases {
		err := b.Register(context.Background(), c.in)
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: Register = %v; want ErrInvalidInstance on %s", c.name, err, c.field)
		}
	}
	resp, err := cli.Get(context.Background(), "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("etcd holds %d keys (%v); want none", resp.Count, err)
	}
	if leases, _ := cli.Leases(context.Background()); len(leases.Leases) != 0 {
		t.Errorf("a lease was granted for invalid input")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   etcd.Config
		field string
	}{
		{"sub-second TTL", etcd.Config{TTL: 500 * time.Millisecond}, "TTL"},
		{"fractional TTL", etcd.Config{TTL: 1500 * time.Millisecond}, "TTL"},
		{"negative TTL", etcd.Config{TTL: -time.Second}, "TTL"},
		{"relative prefix", etcd.Config{Prefix: "roster"}, "Prefix"},
		{"trailing slash", etcd.Config{Prefix: "/roster/"}, "Prefix"},
		{"dotdot segment", etcd.Config{Prefix: "/roster/../etc"}, "Prefix"},
		{"empty segment", etcd.Config{Prefix: "/roster//x"}, "Prefix"},
		{"space in prefix", etcd.Config{Prefix: "/ros ter"}, "Prefix"},
		{"empty endpoint", etcd.Config{Endpoints: []string{""}}, "Endpoints[0]"},
		{"password without user", etcd.Config{Password: "secret"}, "Password"},
		{"bad retry", etcd.Config{Retry: retry.Policy{Base: time.Minute, Max: time.Second}}, "Retry"},
		{"negative request timeout", etcd.Config{RequestTimeout: -1}, "RequestTimeout"},
	}
	for _, c := range cases {
		c.cfg.Logger = testLogger(t)
		b, err := etcd.New(c.cfg)
		if err == nil {
			b.Close()
		}
		if !errors.Is(err, etcd.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: New = %v; want ErrInvalidConfig naming %s", c.name, err, c.field)
		}
		if strings.Contains(fmt.Sprint(err), "secret") {
			t.Errorf("%s: error %q reveals the password", c.name, err)
		}
	}
	if _, err := etcd.NewWithClient(nil, etcd.Config{}); !errors.Is(err, etcd.ErrInvalidConfig) {
		t.Errorf("NewWithClient(nil) = %v; want ErrInvalidConfig", err)
	}
}

func TestPrefixIsolatesTenants(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfgA := testConfig(t, srv.Endpoints())
	cfgA.Prefix = "/tenant-a/svc"
	cfgB := testConfig(t, srv.Endpoints())
	cfgB.Prefix = "/tenant-b/svc"
	a, b := newBackend(t, cfgA), newBackend(t, cfgB)
	register(t, a, instance("payments", "p-1"))
	register(t, b, instance("payments", "p-2"))

	resp, err := cli.Get(context.Background(), "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	want := []string{"/tenant-a/svc/payments/p-1", "/tenant-b/svc/payments/p-2"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	got, err := a.Resolve(context.Background(), "payments")
	if err != nil || len(got) != 1 || got[0].ID != "p-1" {
		t.Errorf("tenant a resolves %v, %v; want only p-1", got, err)
	}
}

func TestDeregisterDeletesNow(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	keep, gone := instance("payments", "keep"), instance("payments", "gone")
	register(t, b, keep)
	register(t, b, gone)
	if err := b.Deregister(context.Background(), gone); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if resp, _ := getKey(cli, b.Key("payments", "gone"), time.Second); len(resp.Kvs) != 0 {
		t.Errorf("key still present right after Deregister")
	}
	if resp, _ := getKey(cli, b.Key("payments", "keep"), time.Second); len(resp.Kvs) != 1 {
		t.Errorf("the other instance was removed too")
	}
	if err := b.Deregister(context.Background(), gone); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("second Deregister = %v; want ErrNotRegistered", err)
	}
	if _, err := b.Status("payments", "gone"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status after Deregister = %v; want ErrNotRegistered", err)
	}
}

func TestCloseRevokesAtOnce(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.TTL = 30 * time.Second // expiry would take long: only revocation removes it now
	b, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("payments", "p-1"))
	register(t, b, instance("orders", "o-1"))
	lease := b.Lease()
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	resp, err := cli.Get(context.Background(), "/roster/services/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("after Close etcd holds %d keys (%v); want 0", resp.Count, err)
	}
	if ttl, _ := cli.TimeToLive(context.Background(), lease); ttl.TTL != -1 {
		t.Errorf("lease TTL after Close = %d; want -1 (revoked)", ttl.TTL)
	}
	if took > cfg.RequestTimeout {
		t.Errorf("Close took %v", took)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	if err := b.Register(context.Background(), instance("x", "y")); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Register after Close = %v; want ErrClosed", err)
	}
	if err := b.Deregister(context.Background(), instance("payments", "p-1")); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Deregister after Close = %v; want ErrClosed", err)
	}
	if _, err := b.Resolve(context.Background(), "payments"); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Resolve after Close = %v; want ErrClosed", err)
	}
	if _, err := b.Watch(context.Background(), "payments"); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watch after Close = %v; want ErrClosed", err)
	}
}

func TestCloseWithUnreachableEtcdIsBounded(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	b, err := etcd.New(testConfig(t, srv.Endpoints()))
	if err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("payments", "p-1"))
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = b.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with etcd down; want it bounded by RequestTimeout", took)
	}
	if err == nil {
		t.Errorf("Close = nil; want the revoke failure reported")
	}
}

func TestRegisterWithEndedContextLeavesNothing(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	b := newBackend(t, testConfig(t, []string{proxy.Endpoint()}))
	register(t, b, instance("payments", "warm")) // the lease exists

	// Already cancelled: nothing is attempted.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Register(ctx, instance("payments", "cancelled")); !errors.Is(err, context.Canceled) {
		t.Errorf("Register(cancelled) = %v; want context.Canceled", err)
	}
	// Ends while the write is in flight.
	proxy.SetLatency(150 * time.Millisecond)
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := b.Register(ctx, instance("payments", "slow"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Register(slow) = %v; want context.DeadlineExceeded", err)
	}
	proxy.SetLatency(0)
	for _, id := range []string{"cancelled", "slow"} {
		if _, err := b.Status("payments", id); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Status(%s) = %v; want ErrNotRegistered", id, err)
		}
	}
	// Nothing is left, now or once every write in flight has landed.
	check := func() {
		resp, err := cli.Get(context.Background(), "/roster/services/payments/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != b.Key("payments", "warm") {
			t.Errorf("etcd holds %v (%v); want only the warm instance", resp.Kvs, err)
		}
	}
	check()
	register(t, b, instance("payments", "barrier")) // every earlier write is done
	if err := b.Deregister(context.Background(), instance("payments", "barrier")); err != nil {
		t.Fatal(err)
	}
	check()
}

func TestConcurrentRegisterDeregister(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			in := instance("load", fmt.Sprintf("i-%02d", i))
			for round := range 3 {
				in.Metadata = map[string]string{"round": fmt.Sprint(round)}
				if err := b.Register(ctx, in); err != nil {
					t.Errorf("Register: %v", err)
					return
				}
				if i%2 == 1 && round < 2 {
					if err := b.Deregister(ctx, in); err != nil {
						t.Errorf("Deregister: %v", err)
						return
					}
				}
			}
			if i%5 == 0 {
				if err := b.Deregister(ctx, in); err != nil {
					t.Errorf("Deregister: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	resp, err := cli.Get(context.Background(), "/roster/services/load/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, kv := range resp.Kvs {
		var in discovery.Instance
		if err := json.Unmarshal(kv.Value, &in); err != nil || in.Metadata["round"] != "2" {
			t.Errorf("%s = %s; want round 2", kv.Key, kv.Value)
		}
		got[in.ID] = true
	}
	for i := range 50 {
		id := fmt.Sprintf("i-%02d", i)
		if want := i%5 != 0; got[id] != want {
			t.Errorf("%s present = %v, want %v", id, got[id], want)
		}
	}
}
