package discovery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

func TestValidateMaintenance(t *testing.T) {
	t.Parallel()
	key := discovery.Key{Service: "payments", ID: "p-1"}
	cases := []struct {
		name   string
		target discovery.Key
		reason string
		d      time.Duration
		field  string // "" for valid
	}{
		{"instance", key, "disk", 0, ""},
		{"whole service", discovery.Key{Service: "payments"}, "evacuation", time.Hour, ""},
		{"longest reason", key, strings.Repeat("é", discovery.MaxReasonLen/2), time.Second, ""},
		{"empty reason", key, "", 0, "Reason"},
		{"reason too long", key, strings.Repeat("r", discovery.MaxReasonLen+1), 0, "Reason"},
		{"reason with a tab", key, "a\tb", 0, "Reason"},
		{"reason not UTF-8", key, "\xff", 0, "Reason"},
		{"negative duration", key, "disk", -time.Nanosecond, "Duration"},
		{"no service", discovery.Key{ID: "p-1"}, "disk", 0, "Service"},
		{"bad ID", discovery.Key{Service: "payments", ID: "~maint"}, "disk", 0, "ID"},
	}
	for _, tc := range cases {
		err := discovery.ValidateMaintenance(tc.target, tc.reason, tc.d)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v; want nil", tc.name, err)
			}
			continue
		}
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v; want a *FieldError naming %s", tc.name, err, tc.field)
		}
	}
}

func TestApplyMaintenance(t *testing.T) {
	t.Parallel()
	set := []discovery.Instance{
		{Service: "payments", ID: "p-1", Address: "10.0.0.1:80", Condition: discovery.ConditionDraining, Reason: "stop"},
		{Service: "payments", ID: "p-2", Address: "10.0.0.2:80", Metadata: map[string]string{"v": "1"}},
		{Service: "payments", ID: "p-3", Address: "10.0.0.3:80"},
	}
	overrides := []discovery.Maintenance{
		{Service: "payments", ID: "p-2", Reason: "disk"},
		{Service: "payments", ID: "p-9", Reason: "absent"},
		{Service: "orders", Reason: "other service"},
	}
	got := discovery.ApplyMaintenance(set, overrides)
	if got[0].Condition != discovery.ConditionDraining || got[2].Condition != discovery.ConditionServing {
		t.Errorf("instances without an override changed: %+v", got)
	}
	if got[1].Condition != discovery.ConditionMaintenance || got[1].Reason != "disk" || got[1].Metadata["v"] != "1" {
		t.Errorf("p-2 = %+v; want maintenance \"disk\" with its metadata", got[1])
	}
	if set[1].Condition != discovery.ConditionServing {
		t.Error("ApplyMaintenance changed its argument")
	}
	got[1].Metadata["v"] = "2"
	if set[1].Metadata["v"] != "1" {
		t.Error("the merged instance shares its Metadata with the argument")
	}

	got = discovery.ApplyMaintenance(set, append(overrides, discovery.Maintenance{Service: "payments", Reason: "region"}))
	for i, want := range []string{"region", "disk", "region"} {
		if got[i].Condition != discovery.ConditionMaintenance || got[i].Reason != want {
			t.Errorf("under the service's override, %s = %v %q; want maintenance %q", got[i].ID, got[i].Condition, got[i].Reason, want)
		}
	}
	if routed, _ := discovery.Routable(got); len(routed) != 0 {
		t.Errorf("Routable routes to %d instances in maintenance", len(routed))
	}
}
