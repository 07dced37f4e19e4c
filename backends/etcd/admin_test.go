package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/invalidtest"
)

// putKeys writes each key=value with a plain client, as someone other than
// roster might.
func putKeys(t *testing.T, cli *clientv3.Client, kvs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for k, v := range kvs {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
}

func skippedKeys(skipped []discovery.SkippedEntry) map[string]string {
	out := make(map[string]string)
	for _, s := range skipped {
		out[s.Key] = s.Err.Error()
	}
	return out
}

func TestServices(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	got, skipped, err := b.Services(ctx)
	if err != nil || len(got) != 0 || len(skipped) != 0 {
		t.Fatalf("Services of an empty prefix = %v, %v, %v; want none", got, skipped, err)
	}

	register(t, b, instance("payments", "p-1"))
	register(t, b, instance("payments", "p-2"))
	register(t, b, instance("orders", "o-1"))
	putKeys(t, cli, map[string]string{
		"/roster/services/payments/raw":        `not json: counted, values are not read`,
		"/roster/services/payments/~maint/p-1": `reserved: neither counted nor skipped`,
		"/roster/services/odd":                 `{}`,
		"/roster/services/payments/":           `{}`,
		"/roster/services/a/b/c":               `{}`,
		"/roster/servicesX/payments/p":         `outside the prefix`,
		"/elsewhere/payments/p-9":              `outside the prefix`,
	})

	got, skipped, err = b.Services(ctx)
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	want := []discovery.ServiceSummary{{Service: "orders", Instances: 1}, {Service: "payments", Instances: 3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Services = %v; want %v", got, want)
	}
	wantSkipped := map[string]string{
		"/roster/services/odd":       "not /roster/services/<service>/<id>",
		"/roster/services/payments/": "not /roster/services/<service>/<id>",
		"/roster/services/a/b/c":     "not /roster/services/<service>/<id>",
	}
	if fmt.Sprint(skippedKeys(skipped)) != fmt.Sprint(wantSkipped) {
		t.Errorf("Services skipped %v; want %v", skippedKeys(skipped), wantSkipped)
	}
}

func TestInstances(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	p1, p2 := instance("payments", "p-1"), instance("payments", "p-2")
	register(t, b, p2)
	register(t, b, p1)
	register(t, b, instance("pay", "not-payments"))
	putKeys(t, cli, map[string]string{
		"/roster/services/payments/p-3":        `{"service":"payments","id":"p-3","address":"127.0.0.1:8083"}`,
		"/roster/services/payments/bad":        `not json`,
		"/roster/services/payments/x":          `{"service":"payments","id":"y","address":"127.0.0.1:8081"}`,
		"/roster/services/payments/addr":       `{"service":"payments","id":"addr","address":"nowhere"}`,
		"/roster/services/payments/":           `{"service":"payments","id":"","address":"127.0.0.1:8090"}`,
		"/roster/services/payments/~maint/p-1": `reserved: neither listed nor skipped`,
	})

	got, skipped, err := b.Instances(ctx, "payments")
	if err != nil {
		t.Fatalf("Instances: %v", err)
	}
	if len(got) != 3 || !got[0].Equal(p1) || !got[1].Equal(p2) || got[2].ID != "p-3" {
		t.Fatalf("Instances = %+v; want p-1, p-2 and p-3 in that order", got)
	}
	for _, in := range got[:2] {
		if in.Lease != fmt.Sprintf("%x", int64(b.Lease())) || b.Lease() == 0 || !in.HasTTL || in.TTL <= 0 || in.TTL > testTTL {
			t.Errorf("%s: lease %x, TTL %v; want the backend's lease %x with 0 < TTL <= %v",
				in.ID, in.Lease, in.TTL, b.Lease(), testTTL)
		}
	}
	if got[2].Lease != "" || got[2].HasTTL || got[2].TTL != 0 {
		t.Errorf("p-3 without a lease: lease %q, TTL %v; want none", got[2].Lease, got[2].TTL)
	}
	reasons := skippedKeys(skipped)
	wantSkipped := map[string]string{
		"/roster/services/payments/bad":  "not a valid instance: invalid character",
		"/roster/services/payments/x":    "not a valid instance: it holds instance payments/y",
		"/roster/services/payments/addr": "not a valid instance: discovery: invalid instance: Address is not host:port",
		"/roster/services/payments/":     "not a valid instance: discovery: invalid instance: ID must not be empty",
	}
	if len(reasons) != len(wantSkipped) {
		t.Errorf("Instances skipped %v; want %v", reasons, wantSkipped)
	}
	for k, want := range wantSkipped {
		if !strings.HasPrefix(reasons[k], want) {
			t.Errorf("skipped %s: %q; want it to start %q", k, reasons[k], want)
		}
	}

	// A lease granted by someone else shows with the time left on it.
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/roster/services/gone/g-1", `{"service":"gone","id":"g-1","address":"127.0.0.1:1"}`,
		clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	got, _, err = b.Instances(ctx, "gone")
	if err != nil || len(got) != 1 || got[0].Lease != fmt.Sprintf("%x", int64(lease.ID)) || got[0].TTL <= 50*time.Second {
		t.Errorf("Instances(gone) = %+v, %v; want g-1 under lease %x with about 60s left", got, err, lease.ID)
	}

	got, _, err = b.Instances(ctx, "nobody")
	if err != nil || len(got) != 0 {
		t.Errorf("Instances(nobody) = %v, %v; want none", got, err)
	}
}

// Bad input is an error wrapping discovery.ErrInvalidInstance (as
// discoverytest's OperatorView checks too), and etcd's revision shows
// that nothing was written.
func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	register(t, b, instance("payments", "p-1"))
	revision := func() int64 {
		resp, err := cli.Get(ctx, "any")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	before := revision()

	invalidtest.CheckRefused(ctx, t, b)
	if after := revision(); after != before {
		t.Errorf("revision %d after the bad calls; want %d: nothing written", after, before)
	}
	if resp, err := getKey(cli, "/roster/services/payments/p-1", time.Second); err != nil || len(resp.Kvs) != 1 {
		t.Errorf("payments/p-1 after the bad calls: %v, %v; want it still there", resp, err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Prefix = "/tenant"
	b := newBackend(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	putKeys(t, cli, map[string]string{
		"/tenant/payments/p-1":          `{"service":"payments","id":"p-1","address":"127.0.0.1:8081"}`,
		"/tenant/payments/p-10":         `kept: a longer ID`,
		"/roster/services/payments/p-1": `kept: another prefix`,
	})

	if err := b.Delete(ctx, "payments", "p-1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if resp, err := getKey(cli, "/tenant/payments/p-1", time.Second); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("/tenant/payments/p-1 after Delete: %v, %v; want it gone", resp, err)
	}
	for _, k := range []string{"/tenant/payments/p-10", "/roster/services/payments/p-1"} {
		if resp, err := getKey(cli, k, time.Second); err != nil || len(resp.Kvs) != 1 {
			t.Errorf("%s after Delete: %v, %v; want it kept", k, resp, err)
		}
	}

	err := b.Delete(ctx, "payments", "p-1")
	if !errors.Is(err, discovery.ErrNotRegistered) || !strings.Contains(err.Error(), "/tenant/payments/p-1") {
		t.Errorf("Delete of a missing key = %v; want an error wrapping ErrNotRegistered naming the key", err)
	}
}

// An operator's view of the registry: the services, and the instances of
// one with their lease and the time left on it.
func ExampleBackend_Services() {
	srv, err := etcdtest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	b, err := etcd.New(etcd.Config{Endpoints: srv.Endpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx := context.Background()
	for _, in := range []discovery.Instance{
		{Service: "payments", ID: "p-1", Address: "10.0.0.1:8080"},
		{Service: "payments", ID: "p-2", Address: "10.0.0.2:8080"},
		{Service: "orders", ID: "o-1", Address: "10.0.0.3:8080"},
	} {
		if err := b.Register(ctx, in); err != nil {
			log.Fatal(err)
		}
	}

	services, _, err := b.Services(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range services {
		fmt.Println(s.Service, s.Instances)
	}
	instances, _, err := b.Instances(ctx, "payments")
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range instances {
		fmt.Println(in.ID, in.Address, in.Lease == fmt.Sprintf("%x", int64(b.Lease())), in.TTL > 0)
	}
	// Output:
	// orders 1
	// payments 2
	// p-1 10.0.0.1:8080 true true
	// p-2 10.0.0.2:8080 true true
}
