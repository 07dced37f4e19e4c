package nats_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/servingtest"
)

// WriteValue implements discoverytest.ValueWriter: a plain Put, without a
// TTL, of value under the instance's key in the harness's bucket (created
// as a Backend creates it), as an older roster or another tool would write
// it.
func (h *harness) WriteValue(ctx context.Context, service, id string, value []byte) error {
	b, err := nats.New(testConfig(h.t, h.srv.URL(), h.bucket))
	if err != nil {
		return err
	}
	_, err = b.Resolve(ctx, service) // opens, and so creates, the bucket
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	key, err := nats.KeyOf(discovery.Key{Service: service, ID: id})
	if err != nil {
		return err
	}
	nc, err := natsgo.Connect(h.srv.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, h.bucket)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, value)
	return err
}

// TestServingChangeIsOneWrite: changing an instance's condition, weight or
// zone is one write of its key: the key's revision (its stream sequence)
// moves by one per change, and a watch of the key sees one PUT per change
// and no DELETE or PURGE in between.
func TestServingChangeIsOneWrite(t *testing.T) {
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "serving")
	cfg.TTL = time.Minute // no renewal writes during the test
	b := newBackend(t, cfg)
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := b.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	key, err := nats.KeyOf(in.Key())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "serving")
	if err != nil {
		t.Fatal(err)
	}
	first, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	edits := servingtest.Edits
	for _, edit := range edits {
		edit(&in)
		if err := b.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	last, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// The watch delivers what the bucket still holds when it gets there:
	// with one message per key, a write that the next one replaced before
	// the watch's consumer delivered it is skipped (seen in 1 of 10 runs
	// under load). So it is read up to the last write, and every message
	// it delivers must be a PUT; the revision, below, counts the writes.
	for seen := uint64(0); seen < last.Revision(); {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				t.Fatalf("watch saw %v of %s during the changes; want only PUTs", e.Operation(), e.Key())
			}
			seen = e.Revision()
		case <-ctx.Done():
			t.Fatalf("watch did not deliver the last write (revision %d); reached %d", last.Revision(), seen)
		}
	}
	if got, want := last.Revision()-first.Revision(), uint64(len(edits)); got != want {
		t.Errorf("%d changes moved the key's revision by %d; want %d (one write each)", len(edits), got, want)
	}
}

// BenchmarkServingUpdate compares an update in place of an instance's
// condition (Register of the held instance, changed) with a raw Put of the
// same value to another key of the bucket, interleaved
// in the same run. Metric: update/put, the ratio of their mean latencies.
func BenchmarkServingUpdate(b *testing.B) {
	skipShort(b)
	srv := natstest.Start(b)
	cfg := benchConfig(b, srv.URL(), "roster")
	backend := newBackend(b, cfg)
	in := benchInstance("bench", "p-1")
	benchRegister(b, backend, in)
	kv := rawKV(b, srv.URL(), "roster")
	servingtest.CompareUpdate(b, in,
		func(in discovery.Instance) ([]byte, error) { return json.Marshal(in) },
		func(ctx context.Context, value []byte) error {
			_, err := kv.Put(ctx, "raw.p-1", value)
			return err
		},
		backend.Register)
}
