package discovery_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/roster-sd/roster/discovery"
)

// legacyInstance is discovery.Instance as roster encoded and decoded it
// before Condition, Reason, Weight and Zone existed (commit 36f228b): the
// decoder of a process not yet upgraded.
type legacyInstance struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

// TestGoldenValueWithoutServingFields: a value written before the serving
// fields existed reads as serving, default weight, no zone; and an instance
// with those defaults encodes to exactly the same bytes, so upgrading a
// process rewrites nothing.
func TestGoldenValueWithoutServingFields(t *testing.T) {
	t.Parallel()
	golden := readGolden(t, "instance-before-serving-fields.json")
	var got discovery.Instance
	if err := json.Unmarshal(golden, &got); err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate of the old value: %v", err)
	}
	if got.Condition != discovery.ConditionServing || got.Reason != "" || got.Weight != 0 || got.Zone != "" {
		t.Errorf("decoded %+v; want serving, no reason, weight 0 (unset), no zone", got)
	}
	if w := got.EffectiveWeight(); w != discovery.DefaultWeight {
		t.Errorf("EffectiveWeight() = %d, want %d", w, discovery.DefaultWeight)
	}
	if routed, fallback := discovery.Routable([]discovery.Instance{got}); len(routed) != 1 || fallback {
		t.Errorf("Routable(old value) = %v, %v; want it routed without fallback", routed, fallback)
	}
	enc, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, golden) {
		t.Errorf("re-encoded as\n%s\nwant the old bytes\n%s", enc, golden)
	}
}

// TestGoldenValuesWithServingFields: the new encoder writes the golden
// bytes, the new decoder reads them back, and the decoder of a process not
// yet upgraded reads the same instance without error, ignoring the fields
// it does not know.
func TestGoldenValuesWithServingFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file string
		in   discovery.Instance
	}{
		{"instance-draining.json", discovery.Instance{
			Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Metadata: map[string]string{"version": "1.4.2"},
			Condition: discovery.ConditionDraining, Reason: "shutting down", Weight: 250, Zone: "eu-west-1a",
		}},
		{"instance-not-ready.json", discovery.Instance{
			Service: "payments", ID: "p-2", Address: "10.0.0.8:8080",
			Condition: discovery.ConditionNotReady, Reason: "grpc health: NOT_SERVING",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			golden := readGolden(t, tc.file)
			enc, err := json.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, golden) {
				t.Errorf("encoded as\n%s\nwant\n%s", enc, golden)
			}
			var got discovery.Instance
			if err := json.Unmarshal(golden, &got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.in) || got.Validate() != nil {
				t.Errorf("decoded %+v (Validate: %v); want %+v", got, got.Validate(), tc.in)
			}
			var old legacyInstance
			if err := json.Unmarshal(golden, &old); err != nil {
				t.Fatalf("the old decoder fails on the new value: %v", err)
			}
			if old.Service != tc.in.Service || old.ID != tc.in.ID || old.Address != tc.in.Address || len(old.Metadata) != len(tc.in.Metadata) {
				t.Errorf("the old decoder read %+v; want %s at %s", old, tc.in.Key(), tc.in.Address)
			}
		})
	}
}

func TestConditionText(t *testing.T) {
	t.Parallel()
	for _, c := range []discovery.Condition{discovery.ConditionServing, discovery.ConditionNotReady, discovery.ConditionDraining, discovery.ConditionMaintenance} {
		b, err := c.MarshalText()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if string(b) != c.String() {
			t.Errorf("MarshalText(%v) = %s, want %s", c, b, c)
		}
		var back discovery.Condition
		if err := back.UnmarshalText(b); err != nil || back != c {
			t.Errorf("UnmarshalText(%s) = %v, %v; want %v", b, back, err, c)
		}
	}
	if c, err := discovery.ParseCondition(""); err != nil || c != discovery.ConditionServing {
		t.Errorf(`ParseCondition("") = %v, %v; want serving`, c, err)
	}
	if _, err := discovery.ParseCondition("warning"); err == nil {
		t.Error(`ParseCondition("warning") = nil error; want one`)
	}
	if _, err := discovery.Condition(9).MarshalText(); err == nil {
		t.Error("MarshalText(Condition(9)) = nil error; want one")
	}
	if got := discovery.Condition(9).String(); got != "Condition(9)" {
		t.Errorf("String() = %q", got)
	}
	// A value naming a condition this version does not know fails to
	// decode: readers drop it as any invalid value.
	var in discovery.Instance
	if err := json.Unmarshal([]byte(`{"service":"s","id":"i","address":"a:1","condition":"warning"}`), &in); err == nil {
		t.Errorf("decoding an unknown condition: nil error, got %+v", in)
	}
}

func TestValidateServingFields(t *testing.T) {
	t.Parallel()
	base := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	with := func(edit func(*discovery.Instance)) discovery.Instance {
		in := base
		edit(&in)
		return in
	}
	accepts := []struct {
		name string
		in   discovery.Instance
	}{
		{"not ready", with(func(in *discovery.Instance) { in.Condition = discovery.ConditionNotReady })},
		{"draining with reason", with(func(in *discovery.Instance) {
			in.Condition, in.Reason = discovery.ConditionDraining, "shutting down: SIGTERM"
		})},
		{"longest reason", with(func(in *discovery.Instance) { in.Reason = strings.Repeat("r", discovery.MaxReasonLen) })},
		{"unicode reason", with(func(in *discovery.Instance) { in.Reason = "base de données injoignable ✗" })},
		{"weight 1", with(func(in *discovery.Instance) { in.Weight = 1 })},
		{"max weight", with(func(in *discovery.Instance) { in.Weight = discovery.MaxWeight })},
		{"zone", with(func(in *discovery.Instance) { in.Zone = "eu-west-1a" })},
		{"longest zone", with(func(in *discovery.Instance) { in.Zone = strings.Repeat("z", discovery.MaxNameLen) })},
	}
	for _, tc := range accepts {
		if err := tc.in.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
		}
	}
	rejects := []struct {
		name  string
		in    discovery.Instance
		field string
	}{
		{"maintenance", with(func(in *discovery.Instance) { in.Condition = discovery.ConditionMaintenance }), "Condition"},
		{"unknown condition", with(func(in *discovery.Instance) { in.Condition = 42 }), "Condition"},
		{"reason too long", with(func(in *discovery.Instance) { in.Reason = strings.Repeat("r", discovery.MaxReasonLen+1) }), "Reason"},
		{"reason with newline", with(func(in *discovery.Instance) { in.Reason = "line1\nline2" }), "Reason"},
		{"reason not UTF-8", with(func(in *discovery.Instance) { in.Reason = "\xff" }), "Reason"},
		{"negative weight", with(func(in *discovery.Instance) { in.Weight = -1 }), "Weight"},
		{"weight over max", with(func(in *discovery.Instance) { in.Weight = discovery.MaxWeight + 1 }), "Weight"},
		{"zone with slash", with(func(in *discovery.Instance) { in.Zone = "eu/west" }), "Zone"},
		{"zone with space", with(func(in *discovery.Instance) { in.Zone = "eu west" }), "Zone"},
		{"zone dot dot", with(func(in *discovery.Instance) { in.Zone = ".." }), "Zone"},
		{"zone too long", with(func(in *discovery.Instance) { in.Zone = strings.Repeat("z", discovery.MaxNameLen+1) }), "Zone"},
	}
	for _, tc := range rejects {
		err := tc.in.Validate()
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: Validate() = %v; want a FieldError naming %s", tc.name, err, tc.field)
		}
		if _, err := tc.in.Normalize(); !errors.Is(err, discovery.ErrInvalidInstance) {
			t.Errorf("%s: Normalize() = %v; want ErrInvalidInstance", tc.name, err)
		}
	}
}

func TestEqualComparesServingFields(t *testing.T) {
	t.Parallel()
	base := discovery.Instance{Service: "s", ID: "i", Address: "a:1"}
	for name, edit := range map[string]func(*discovery.Instance){
		"condition": func(in *discovery.Instance) { in.Condition = discovery.ConditionDraining },
		"reason":    func(in *discovery.Instance) { in.Reason = "r" },
		"weight":    func(in *discovery.Instance) { in.Weight = discovery.DefaultWeight },
		"zone":      func(in *discovery.Instance) { in.Zone = "a" },
	} {
		other := base
		edit(&other)
		if base.Equal(other) || other.Equal(base) {
			t.Errorf("instances differing in %s are Equal", name)
		}
		if discovery.EqualSets([]discovery.Instance{base}, []discovery.Instance{other}) {
			t.Errorf("sets differing in %s are EqualSets", name)
		}
	}
}

func TestSanitizeReason(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", ""},
		{"ok", "ok"},
		{"connect: connection refused\n\tat dial", "connect: connection refused at dial"},
		{"  lead and trail \n", "lead and trail"},
		{"bad \xff byte", "bad byte"},
		{"nul\x00here", "nul here"},
	}
	for _, tc := range cases {
		if got := discovery.SanitizeReason(tc.in); got != tc.want {
			t.Errorf("SanitizeReason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("é", discovery.MaxReasonLen) // 2 bytes a rune
	got := discovery.SanitizeReason(long)
	if len(got) > discovery.MaxReasonLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Errorf("SanitizeReason(long) = %d bytes, valid UTF-8 %v, %q at the end; want <= %d, valid, ending in ...",
			len(got), utf8.ValidString(got), got[len(got)-5:], discovery.MaxReasonLen)
	}
	in := discovery.Instance{Service: "s", ID: "i", Address: "a:1", Reason: got}
	if err := in.Validate(); err != nil {
		t.Errorf("a sanitized reason fails Validate: %v", err)
	}
}

func FuzzSanitizeReasonValidates(f *testing.F) {
	f.Add("connection refused\n")
	f.Add(strings.Repeat("\xff", 300))
	f.Fuzz(func(t *testing.T, s string) {
		in := discovery.Instance{Service: "s", ID: "i", Address: "a:1", Reason: discovery.SanitizeReason(s)}
		if err := in.Validate(); err != nil {
			t.Fatalf("SanitizeReason(%q) = %q fails Validate: %v", s, in.Reason, err)
		}
	})
}

func TestRoutePolicy(t *testing.T) {
	t.Parallel()
	mk := func(id string, c discovery.Condition) discovery.Instance {
		return discovery.Instance{Service: "s", ID: id, Address: "a:1", Condition: c}
	}
	serving, serving2 := mk("a", discovery.ConditionServing), mk("e", discovery.ConditionServing)
	notReady := mk("b", discovery.ConditionNotReady)
	draining := mk("c", discovery.ConditionDraining)
	maint := mk("d", discovery.ConditionMaintenance)
	unknown := mk("f", 42)
	ids := func(set []discovery.Instance) string {
		var s []string
		for _, in := range set {
			s = append(s, in.ID)
		}
		return strings.Join(s, ",")
	}
	cases := []struct {
		name         string
		policy       discovery.RoutePolicy
		set          []discovery.Instance
		want         string
		wantFallback bool
	}{
		{"serving only", discovery.RoutePolicy{}, []discovery.Instance{serving, notReady, draining, maint, serving2, unknown}, "a,e", false},
		{"fallback to not ready", discovery.RoutePolicy{}, []discovery.Instance{notReady, draining, maint, unknown}, "b", true},
		{"no fallback", discovery.RoutePolicy{NoFallback: true}, []discovery.Instance{notReady, draining}, "", false},
		{"never draining or maintenance", discovery.RoutePolicy{}, []discovery.Instance{draining, maint}, "", false},
		{"empty", discovery.RoutePolicy{}, nil, "", false},
	}
	for _, tc := range cases {
		got, fallback := tc.policy.Select(tc.set)
		if ids(got) != tc.want || fallback != tc.wantFallback || got == nil {
			t.Errorf("%s: Select = [%s] (nil %v), fallback %v; want [%s], fallback %v", tc.name, ids(got), got == nil, fallback, tc.want, tc.wantFallback)
		}
	}
	if got, _ := discovery.Routable([]discovery.Instance{notReady, serving}); ids(got) != "a" {
		t.Errorf("Routable = [%s], want [a]", ids(got))
	}
}
