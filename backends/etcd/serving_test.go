package etcd_test

import (
	"context"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/servingtest"
)

// WriteValue implements discoverytest.ValueWriter: a plain Put, without a
// lease, of value under the harness's prefix, as an older roster or another
// tool would write it.
func (h *harness) WriteValue(ctx context.Context, service, id string, value []byte) error {
	_, err := etcdtest.Client(h.t, h.srv).Put(ctx, h.prefix+"/"+service+"/"+id, string(value))
	return err
}

// TestServingChangeIsOneWrite: changing an instance's condition, weight or
// zone is one Put of its key: etcd's revision moves by exactly 1, the key
// keeps its create revision (no delete and re-create), and a watch on the
// prefix sees one PUT and no DELETE.
func TestServingChangeIsOneWrite(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	in := instance("payments", "p-1")
	register(t, b, in)
	const key = "/roster/services/payments/p-1"
	first, err := getKey(cli, key, waitFor)
	if err != nil || len(first.Kvs) != 1 {
		t.Fatalf("Get(%s) = %v, %v", key, first, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	wch := cli.Watch(ctx, "/roster/services/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision+1))

	edits := servingtest.Edits
	for _, edit := range edits {
		edit(&in)
		register(t, b, in)
	}
	last, err := getKey(cli, key, waitFor)
	if err != nil || len(last.Kvs) != 1 {
		t.Fatalf("Get(%s) = %v, %v", key, last, err)
	}
	if got, want := last.Header.Revision-first.Header.Revision, int64(len(edits)); got != want {
		t.Errorf("%d changes moved etcd's revision by %d; want %d (one write each)", len(edits), got, want)
	}
	if got, want := last.Kvs[0].CreateRevision, first.Kvs[0].CreateRevision; got != want {
		t.Errorf("create revision %d after the changes, %d before: the key was deleted and re-created", got, want)
	}
	var puts int
	for puts < len(edits) {
		select {
		case resp := <-wch:
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					t.Fatalf("watch saw %v of %s during the changes; want only PUTs", ev.Type, ev.Kv.Key)
				}
				puts++
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %d PUTs, want %d", puts, len(edits))
		}
	}
}

// BenchmarkServingUpdate compares an update in place of an instance's
// condition (Register of the held instance, changed) with a raw etcd Put
// of the same value under a lease, interleaved in the same run. Metric:
// update/put, the ratio of their mean latencies.
func BenchmarkServingUpdate(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := etcdtest.Client(b, srv)
	backend := newBackend(b, benchConfig(b, srv.Endpoints()))
	in := instance("bench", "p-1")
	register(b, backend, in)
	lease, err := cli.Grant(context.Background(), 60)
	if err != nil {
		b.Fatal(err)
	}
	servingtest.CompareUpdate(b, in,
		func(in discovery.Instance) ([]byte, error) {
			return fmt.Appendf(nil, `{"service":"bench","id":"raw","address":"127.0.0.1:8080","metadata":{"zone":"a"},"condition":%q}`, in.Condition), nil
		},
		func(ctx context.Context, value []byte) error {
			_, err := cli.Put(ctx, "/raw/bench/p-1", string(value), clientv3.WithLease(lease.ID))
			return err
		},
		backend.Register)
}
