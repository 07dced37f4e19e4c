package nats_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/invalidtest"
)

// rawJS connects to url as another process would.
func rawJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// putKeys writes each key=value into kv with a plain Put (no TTL), as
// someone other than roster might.
func putKeys(t *testing.T, kv jetstream.KeyValue, kvs map[string]string) {
	t.Helper()
	for k, v := range kvs {
		if _, err := kv.Put(t.Context(), k, []byte(v)); err != nil {
			t.Fatalf("Put(%s): %v", k, err)
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

func register(t *testing.T, b *nats.Backend, ins ...discovery.Instance) {
	t.Helper()
	for _, in := range ins {
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatalf("Register(%s): %v", in.Key(), err)
		}
	}
}

func inst(service, id string) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Address: "127.0.0.1:8080"}
}

func TestServices(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))

	got, skipped, err := b.Services(t.Context())
	if err != nil || len(got) != 0 || len(skipped) != 0 {
		t.Fatalf("Services of an empty bucket = %v, %v, %v; want none", got, skipped, err)
	}

	register(t, b, inst("payments", "p-1"), inst("payments", "p-2"), inst("orders", "o-1"), inst("pay.ments", "x.1"))
	kv := rawKV(t, srv.URL(), "roster")
	putKeys(t, kv, map[string]string{
		"payments.raw": `not json: counted, values are not read`,
		"odd":          `{}`,
		"a.b.c":        `{}`,
		"a/b.c":        `{}`,
		"==.x":         `{}`,
		"svc.=":        `{}`,
		"gone.g-1":     `{}`,
	})
	if err := kv.Delete(t.Context(), "gone.g-1"); err != nil {
		t.Fatal(err)
	}

	got, skipped, err = b.Services(t.Context())
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	want := []discovery.ServiceSummary{{Service: "orders", Instances: 1}, {Service: "pay.ments", Instances: 1}, {Service: "payments", Instances: 3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Services = %v; want %v", got, want)
	}
	wantSkipped := map[string]string{
		"odd":   "not <service>.<id>",
		"a.b.c": "not <service>.<id>",
		"a/b.c": "not <service>.<id>: discovery: invalid instance: Service has '/' at byte 1; only letters, digits, '.', '_' and '-' are allowed",
		"==.x":  `not <service>.<id>: discovery: invalid instance: Service must not be ".."`,
		"svc.=": `not <service>.<id>: discovery: invalid instance: ID must not be "."`,
	}
	if fmt.Sprint(skippedKeys(skipped)) != fmt.Sprint(wantSkipped) {
		t.Errorf("Services skipped %v; want %v", skippedKeys(skipped), wantSkipped)
	}
}

func TestInstances(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.TTL = 5 * time.Second
	b5 := newBackend(t, cfg) // another process, with another TTL

	start := time.Now()
	p1, p2, p4 := inst("payments", "p-1"), inst("payments", "p-2"), inst("payments", "p-4")
	register(t, b, p2, p1, inst("pay.ments", "p-1"))
	register(t, b5, p4)
	kv := rawKV(t, srv.URL(), "roster")
	p3 := inst("payments", "p-3")
	putKeys(t, kv, map[string]string{
		"payments.p-3":  mustJSON(p3),
		"payments.bad":  `not json`,
		"payments.x":    mustJSON(inst("payments", "y")),
		"payments.addr": `{"service":"payments","id":"addr","address":"nowhere"}`,
		"payments.gone": mustJSON(inst("payments", "gone")),
	})
	if err := kv.Purge(t.Context(), "payments.gone"); err != nil {
		t.Fatal(err)
	}
	// Another writer's TTL, in the Nats-TTL header.
	p5 := inst("payments", "p-5")
	m := &natsgo.Msg{Subject: "$KV.roster.payments.p-5", Data: []byte(mustJSON(p5))}
	if _, err := rawJS(t, srv.URL()).PublishMsg(t.Context(), m, jetstream.WithMsgTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}

	got, skipped, err := b.Instances(t.Context(), "payments")
	if err != nil {
		t.Fatalf("Instances: %v", err)
	}
	end := time.Now()
	wantIns := []discovery.Instance{p1, p2, p3, p4, p5}
	if len(got) != len(wantIns) {
		t.Fatalf("Instances = %+v; want %v", got, wantIns)
	}
	for i, want := range wantIns {
		if !got[i].Equal(want) {
			t.Errorf("Instances[%d] = %v; want %v", i, got[i].Instance, want)
		}
	}
	wantTTL := map[string]time.Duration{"p-1": testTTL, "p-2": testTTL, "p-3": 0, "p-4": 5 * time.Second, "p-5": time.Minute}
	for _, in := range got {
		ttl := wantTTL[in.ID]
		if ttl == 0 {
			if in.HasTTL || in.Lease != "" || in.TTL != 0 {
				t.Errorf("%s without a TTL: lease %q, TTL %v (%v); want none", in.ID, in.Lease, in.TTL, in.HasTTL)
			}
			continue
		}
		// Every key was written after start; renewals keep it recent.
		if !in.HasTTL || in.TTL <= 0 || in.TTL > ttl || in.TTL < ttl-(end.Sub(start)+time.Second) {
			t.Errorf("%s: %v left (%v); want in (0, %v], and no more than the test's time less", in.ID, in.TTL, in.HasTTL, ttl)
		}
		if key, _ := nats.KeyOf(in.Key()); in.Lease != key {
			t.Errorf("%s: lease %q; want its key %q", in.ID, in.Lease, key)
		}
		if l, err := b.ReadLease(t.Context(), in.Lease); err != nil || !l.Found || l.Granted != ttl || l.Left <= 0 || l.Left > ttl {
			t.Errorf("%s: ReadLease = %+v, %v; want found, granted its writer's TTL %v", in.ID, l, err, ttl)
		}
	}
	if got[4].TTL < time.Minute-10*time.Second {
		t.Errorf("p-5: %v left; want about a minute", got[4].TTL)
	}

	reasons := skippedKeys(skipped)
	wantSkipped := map[string]string{
		"payments.bad":  "not a valid instance: invalid character",
		"payments.x":    "not a valid instance: it holds instance payments/y",
		"payments.addr": "not a valid instance: discovery: invalid instance: Address is not host:port",
	}
	if len(reasons) != len(wantSkipped) {
		t.Errorf("Instances skipped %v; want %v", reasons, wantSkipped)
	}
	for k, want := range wantSkipped {
		if !strings.HasPrefix(reasons[k], want) {
			t.Errorf("skipped %s: %q; want it to start %q", k, reasons[k], want)
		}
	}

	got, _, err = b.Instances(t.Context(), "pay.ments")
	if err != nil || len(got) != 1 || !got[0].Equal(inst("pay.ments", "p-1")) {
		t.Errorf("Instances(pay.ments) = %+v, %v; want its p-1 only", got, err)
	}
	got, skipped, err = b.Instances(t.Context(), "nobody")
	if err != nil || len(got) != 0 || len(skipped) != 0 {
		t.Errorf("Instances(nobody) = %v, %v, %v; want none", got, skipped, err)
	}
}

// A value without the Nats-TTL header lives as long as the bucket's own
// TTL (its stream's MaxAge) lets it.
func TestInstancesInABucketWithATTL(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	js := rawJS(t, srv.URL())
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "aged", TTL: time.Hour, LimitMarkerTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, testConfig(t, srv.URL(), "aged"))
	register(t, b, inst("svc", "s-1"))
	putKeys(t, kv, map[string]string{"svc.s-2": mustJSON(inst("svc", "s-2"))})

	got, _, err := b.Instances(t.Context(), "svc")
	if err != nil || len(got) != 2 {
		t.Fatalf("Instances = %+v, %v; want s-1 and s-2", got, err)
	}
	if l, err := b.ReadLease(t.Context(), got[0].Lease); err != nil || l.Granted != testTTL || got[0].TTL > testTTL {
		t.Errorf("s-1: %v left, lease %+v, %v; want its Nats-TTL %v, which overrides the bucket's", got[0].TTL, l, err, testTTL)
	}
	if l, err := b.ReadLease(t.Context(), got[1].Lease); err != nil || l.Granted != time.Hour || got[1].TTL <= testTTL {
		t.Errorf("s-2: %v left, lease %+v, %v; want the bucket's TTL 1h", got[1].TTL, l, err)
	}
}

// Bad input is an error wrapping discovery.ErrInvalidInstance (as
// discoverytest's OperatorView checks too), and the stream's last
// sequence shows that nothing was written.
func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	kv := rawKV(t, srv.URL(), "roster")
	putKeys(t, kv, map[string]string{"payments.p-1": mustJSON(inst("payments", "p-1"))})
	stream, err := rawJS(t, srv.URL()).Stream(t.Context(), "KV_roster")
	if err != nil {
		t.Fatal(err)
	}
	lastSeq := func() uint64 {
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	before := lastSeq()

	invalidtest.CheckRefused(t.Context(), t, b)
	if after := lastSeq(); after != before {
		t.Errorf("last sequence %d after the bad calls; want %d: nothing written", after, before)
	}
	if ok, err := present(t.Context(), kv, "payments.p-1", inst("payments", "p-1")); err != nil || !ok {
		t.Errorf("payments.p-1 after the bad calls: %v, %v; want it still there", ok, err)
	}
}

// An operator deletes the instance of a process that is cut off from
// NATS: every watcher sees it go at once, long before its TTL would, and
// the process writes it back once it is reconnected.
func TestDeleteTheInstanceOfACutOffProcess(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.TTL = time.Minute // its key cannot expire during the test
	a := newBackend(t, cfg)
	admin := newBackend(t, testConfig(t, srv.URL(), "roster"))
	watcher := newBackend(t, testConfig(t, srv.URL(), "roster"))

	p1, p2 := inst("payments", "p-1"), inst("payments", "p-2")
	register(t, a, p1, p2)
	w, err := watcher.Watch(t.Context(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if got, err := w.Next(ctx); err != nil || len(got) != 2 {
		t.Fatalf("first Next = %v, %v; want [p-1 p-2]", got, err)
	}

	proxy.Reject()
	start := time.Now()
	if err := admin.Delete(ctx, "payments", "p-1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err := w.Next(ctx)
	if err != nil || len(got) != 1 || !got[0].Equal(p2) {
		t.Fatalf("Next after Delete = %v, %v; want exactly [p-2]", got, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the watcher saw the delete after %v; want it at once", d)
	}

	proxy.Accept()
	got, err = w.Next(ctx)
	if err != nil || len(got) != 2 || !got[0].Equal(p1) {
		t.Fatalf("Next once the process is back = %v, %v; want [p-1 p-2]", got, err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	kv := rawKV(t, srv.URL(), "roster")
	putKeys(t, kv, map[string]string{
		"pay=ments.x=1":  `not json: deleted all the same`,
		"pay=ments.x=10": `kept: a longer ID`,
		"payments.x=1":   `kept: another service`,
	})

	if err := b.Delete(t.Context(), "pay.ments", "x.1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := kv.Get(t.Context(), "pay=ments.x=1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Get(pay=ments.x=1) after Delete = %v; want ErrKeyNotFound", err)
	}
	for _, k := range []string{"pay=ments.x=10", "payments.x=1"} {
		if _, err := kv.Get(t.Context(), k); err != nil {
			t.Errorf("Get(%s) after Delete = %v; want it kept", k, err)
		}
	}

	err := b.Delete(t.Context(), "pay.ments", "x.1")
	const want = `nats: delete pay.ments/x.1: no key pay=ments.x=1 in bucket "roster": discovery: instance not registered`
	if !errors.Is(err, discovery.ErrNotRegistered) || err.Error() != want {
		t.Errorf("Delete of a missing key = %v; want %q, wrapping ErrNotRegistered", err, want)
	}
}

// While NATS cannot be reached the calls fail with ErrUnavailable; once
// it is back they work, on a Backend that New made while it was down.
func TestAdminWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	proxy.Reject()
	b := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	if _, _, err := b.Services(t.Context()); !errors.Is(err, discovery.ErrUnavailable) {
		t.Errorf("Services while down = %v; want ErrUnavailable", err)
	}
	if _, _, err := b.Instances(t.Context(), "payments"); !errors.Is(err, discovery.ErrUnavailable) {
		t.Errorf("Instances while down = %v; want ErrUnavailable", err)
	}
	if err := b.Delete(t.Context(), "payments", "p-1"); !errors.Is(err, discovery.ErrUnavailable) {
		t.Errorf("Delete while down = %v; want ErrUnavailable", err)
	}

	proxy.Accept()
	register(t, b, inst("payments", "p-1"))
	got, skipped, err := b.Services(t.Context())
	want := []discovery.ServiceSummary{{Service: "payments", Instances: 1}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) || len(skipped) != 0 {
		t.Errorf("Services once NATS is up = %v, %v, %v; want %v", got, skipped, err, want)
	}
	if ins, _, err := b.Instances(t.Context(), "payments"); err != nil || len(ins) != 1 || !ins[0].Equal(inst("payments", "p-1")) {
		t.Errorf("Instances once NATS is up = %+v, %v; want p-1", ins, err)
	}
}

// An operator's view of the bucket: the services, and the instances of
// one with the TTL of each key and the time left on it.
func ExampleBackend_Services() {
	srv, err := natstest.New()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	b, err := nats.New(nats.Config{Endpoints: []string{srv.URL()}, Logger: hclog.NewNullLogger()})
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
		l, err := b.ReadLease(ctx, in.Lease)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(in.ID, in.Address, l.Granted, in.TTL > 0)
	}
	// Output:
	// orders 1
	// payments 2
	// p-1 10.0.0.1:8080 15s true
	// p-2 10.0.0.2:8080 15s true
}
