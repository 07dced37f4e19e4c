package etcd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// A owns svc/k until B registers it: B is the later writer, A reports a
// conflict. A's application then updates the instance with a Register
// whose context ends while A is cut off. The update must not land when
// the link comes back, nor A's previous value be restored over B's (issue
// #20 item 6).
func TestAbandonedUpdateDoesNotTakeTheKeyFromALaterWriter(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfgA := testConfig(t, []string{proxy.Endpoint()})
	cfgA.TTL = 5 * time.Second // the cut is far shorter
	a := newBackend(t, cfgA)
	bk := newBackend(t, testConfig(t, srv.Endpoints()))
	key := a.Key("svc", "k")

	register(t, a, instance("svc", "k"))
	register(t, bk, instance("svc", "k"))
	testwait.Until(t, waitFor, "A reports the conflict", func() bool { return stateOf(a, "svc", "k") == discovery.StateConflict })

	proxy.Reject()
	update := instance("svc", "k")
	update.Metadata = map[string]string{"version": "2"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	abandoned := time.Now()
	if err := a.Register(ctx, update); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register(update) while cut off = %v; want its deadline exceeded", err)
	}
	proxy.Accept() // back within the RequestTimeout of a write sent in the background

	// A is back and has written since: a write of another instance went through.
	register(t, a, instance("svc", "other"))
	// A write bounded by the RequestTimeout from the abandonment would have landed by now.
	for time.Since(abandoned) < 2*cfgA.RequestTimeout {
		time.Sleep(testwait.Interval)
	}
	if !eventually(waitFor, func() bool { return stateOf(a, "svc", "k") == discovery.StateConflict }) {
		t.Errorf("A's status = %v; want conflict", stateOf(a, "svc", "k"))
	}
	resp, err := getKey(cli, key, time.Second)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %v", key, resp, err)
	}
	if got := clientv3.LeaseID(resp.Kvs[0].Lease); got != bk.Lease() || strings.Contains(string(resp.Kvs[0].Value), `"version"`) {
		t.Errorf("key under lease %x with %s; want B's (lease %x) value", got, resp.Kvs[0].Value, bk.Lease())
	}
	if st := stateOf(bk, "svc", "k"); st != discovery.StateRegistered {
		t.Errorf("B's status = %v; want registered", st)
	}
}
