package etcd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// FuzzDecodeInstance feeds decodeInstance what anyone with write access to
// the prefix can store: any key segments and any value. It must never
// panic; what it accepts is a valid instance of that service under its
// own, non-empty ID that survives a round trip through the encoding
// Register writes; what it refuses gives a short error.
func FuzzDecodeInstance(f *testing.F) {
	valid := func(in discovery.Instance) []byte {
		b, err := json.Marshal(in)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add("payments", "p-1", valid(discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Metadata: map[string]string{"zone": "a"}}))
	f.Add("payments", "", valid(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}))
	f.Add("payments", "p-1", valid(discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.7:8080"}))
	f.Add("payments", "a/b", []byte(`{"service":"payments","id":"a/b","address":"[::1]:1"}`))
	f.Add("p", "i", []byte(`{"service":"p","id":"i","address":"h:1","metadata":{"k":"\ud800"}}`))
	f.Add("p", "i", []byte(`{"service":"p","id":"i","address":"h:1","metadata":{"`+strings.Repeat("k", 200)+"\\u0001"+`":"v"}}`))
	f.Add("p", "i", []byte(`{"service":"p","id":"i","address":"h:1","metadata":null,"service":"q"}`))
	f.Add("p", "i", []byte(`[]`))
	f.Add("p", "i", []byte(`{"service":1}`))
	f.Fuzz(func(t *testing.T, service, id string, value []byte) {
		in, err := decodeInstance(service, id, value)
		if err != nil {
			if n := len(err.Error()); n > 1024 {
				t.Fatalf("error of %d bytes for a value of %d: %.200q...", n, len(value), err)
			}
			return
		}
		if in.Service != service || in.ID != id || id == "" {
			t.Fatalf("decodeInstance(%q, %q) = %+v: not that service and ID", service, id, in)
		}
		if err := in.Validate(); err != nil {
			t.Fatalf("decodeInstance accepted an invalid instance: %v", err)
		}
		again, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeInstance(service, id, again)
		if err != nil || !back.Equal(in) {
			t.Fatalf("round trip of %+v gave %+v, %v", in, back, err)
		}
	})
}
