package maintkit_test

import (
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/maintkit"
)

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	m := discovery.Maintenance{Service: "payments", ID: "p-1", Reason: "disk", Since: since, Until: since.Add(time.Hour)}
	b, err := maintkit.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"service":"payments","id":"p-1","reason":"disk","since":"2026-12-07T20:00:00Z","until":"2026-12-07T21:00:00Z"}`
	if string(b) != want {
		t.Errorf("Encode = %s\nwant %s", b, want)
	}
	got, err := maintkit.Decode(m.Target(), b)
	if err != nil || got != m {
		t.Errorf("Decode = %+v, %v; want %+v", got, err, m)
	}
	for _, tc := range []struct {
		name   string
		target discovery.Key
		value  string
	}{
		{"another target", discovery.Key{Service: "payments", ID: "p-2"}, want},
		{"the whole service's key", discovery.Key{Service: "payments"}, want},
		{"not JSON", m.Target(), "disk"},
		{"no reason", m.Target(), `{"service":"payments","id":"p-1"}`},
		{"until before since", m.Target(), `{"service":"payments","id":"p-1","reason":"x","since":"2026-12-07T20:00:00Z","until":"2026-12-07T19:00:00Z"}`},
	} {
		if _, err := maintkit.Decode(tc.target, []byte(tc.value)); err == nil {
			t.Errorf("%s: Decode succeeded", tc.name)
		}
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	plain := []discovery.Instance{p1, p2}
	if got := maintkit.Merge(plain); !discovery.EqualSets(got, plain) {
		t.Errorf("Merge without entries = %v", got)
	}
	entry := maintkit.Entry(discovery.Maintenance{Service: "payments", ID: "p-2", Reason: "disk"})
	if entry.ID != "~maint/p-2" || entry.Validate() == nil {
		t.Errorf("Entry = %+v; want ID ~maint/p-2, not a valid instance", entry)
	}
	svc := maintkit.Entry(discovery.Maintenance{Service: "payments", Reason: "evacuation"})
	got := maintkit.Merge([]discovery.Instance{p1, p2, entry})
	if len(got) != 2 || got[0].Condition != discovery.ConditionServing || got[1].Condition != discovery.ConditionMaintenance || got[1].Reason != "disk" {
		t.Errorf("Merge with p-2's entry = %+v", got)
	}
	got = maintkit.Merge([]discovery.Instance{svc, p1, entry, p2})
	if len(got) != 2 || got[0].Reason != "evacuation" || got[1].Reason != "disk" {
		t.Errorf("Merge with the service's and p-2's entries = %+v", got)
	}
}
