package nats_test

import (
	"testing"

	"github.com/roster-sd/roster/backends/nats"
)

// FuzzDecodeEntry feeds the decoder of the bucket's keys and values with
// whatever another writer could store. Whatever it accepts must be a
// valid instance with an ID, stored under exactly the key roster would
// write for it; it never panics. Run longer with
// go test -fuzz FuzzDecodeEntry -fuzztime 20s ./backends/nats/
func FuzzDecodeEntry(f *testing.F) {
	valid := `{"service":"payments","id":"p-1","address":"10.0.0.1:80"}`
	for _, seed := range []struct{ key, value string }{
		{"payments.p-1", valid},
		{"a=b.x", `{"service":"a.b","id":"x","address":"10.0.0.3:80"}`},
		{"payments.", `{"service":"payments","id":"","address":"10.0.0.1:80"}`},
		{".p-1", `{"service":"","id":"p-1","address":"10.0.0.1:80"}`},
		{"payments.p-2", valid},
		{"payments.p-1.x", valid},
		{"payments", valid},
		{"payments.p-1", `{"service":"payments","id":"p-1","address":"10.0.0.1:80","metadata":{"k":"v"}}`},
		{"payments.p-1", `not json`},
		{"payments.p-1", ``},
	} {
		f.Add(seed.key, []byte(seed.value))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		in, err := nats.DecodeEntry(key, value)
		if err != nil {
			return
		}
		if err := in.Validate(); err != nil {
			t.Fatalf("decoded %q=%q into an invalid instance %+v: %v", key, value, in, err)
		}
		if in.ID == "" {
			t.Fatalf("decoded %q=%q into an instance without an ID: %+v", key, value, in)
		}
		if want, err := nats.KeyOf(in.Key()); err != nil || want != key {
			t.Fatalf("decoded %q=%q into %s, whose key is %q (%v)", key, value, in.Key(), want, err)
		}
	})
}
