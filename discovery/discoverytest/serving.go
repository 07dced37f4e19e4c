package discoverytest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// ValueWriter is implemented by a Harness whose registry stores instances
// as encoded values (Capabilities.Values): the suite uses it to write a
// value as an older roster, or another tool, would have written it.
type ValueWriter interface {
	// WriteValue stores value as the registry value of service/id, where
	// the backend's handles read that instance, outside any registration
	// (no lease or TTL: it stays until the harness is closed).
	WriteValue(ctx context.Context, service, id string, value []byte) error
}

// legacyValue is an instance as roster encoded it before Condition,
// Reason, Weight and Zone existed.
const legacyValue = `{"service":"payments","id":"p-1","address":"10.0.0.7:8080","metadata":{"version":"1.4.2"}}`

// servingSubtests are the rules about the serving fields of an instance.
var servingSubtests = []subtest{
	{name: "ServingFieldsRoundTrip", run: testServingFieldsRoundTrip},
	{name: "ConditionUpdateInPlace", run: testConditionUpdateInPlace},
	{name: "InvalidServingFieldsWriteNothing", run: testInvalidServingFieldsWriteNothing},
	{name: "ValueWithoutServingFieldsReadsAsServing", needs: Capabilities{Values: true}, run: testValueWithoutServingFieldsReadsAsServing},
}

// servingInstances holds one instance per condition a process publishes,
// weight bound and zone.
func servingInstances() []discovery.Instance {
	return []discovery.Instance{
		{Service: payments, ID: "p-1", Address: "10.0.0.1:8080"},
		{Service: payments, ID: "p-2", Address: "10.0.0.2:8080", Condition: discovery.ConditionNotReady,
			Reason: "grpc health: NOT_SERVING", Weight: 1, Zone: "eu-west-1a"},
		{Service: payments, ID: "p-3", Address: "10.0.0.3:8080", Condition: discovery.ConditionDraining,
			Reason: "shutting down", Weight: discovery.MaxWeight, Zone: "eu-west-1b"},
		{Service: payments, ID: "p-4", Address: "10.0.0.4:8080", Condition: discovery.ConditionServing,
			Reason: "check passed: é ✓", Weight: discovery.DefaultWeight, Zone: "us.east_1-c",
			Metadata: map[string]string{"version": "2"}},
	}
}

func testServingFieldsRoundTrip(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	want := servingInstances()
	w := e.watch(b, payments)
	e.register(a, want...)
	e.nextUntil(w, want)
	e.waitResolve(b, payments, want)
	e.waitResolve(a, payments, want)
	// A watcher started now returns them on its first Next.
	if got := e.next(e.watch(b, payments)); !discovery.EqualSets(got, want) {
		t.Errorf("first Next of a new watcher = %s; want %s", fmtSet(got), fmtSet(want))
	}
	got := e.resolve(b, payments)
	for i := range got {
		if i < len(want) && got[i].EffectiveWeight() != want[i].EffectiveWeight() {
			t.Errorf("%s: EffectiveWeight %d, want %d", got[i].Key(), got[i].EffectiveWeight(), want[i].EffectiveWeight())
		}
	}
}

func testConditionUpdateInPlace(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	other := inst(payments, "p-0", "10.0.0.9:8080")
	v := inst(payments, "p-1", "10.0.0.7:8080", "version", "1")
	e.register(a, other, v)
	w := e.watch(b, payments)
	e.nextUntil(w, set(other, v))

	steps := []struct {
		name string
		edit func(*discovery.Instance)
	}{
		{"not ready", func(in *discovery.Instance) { in.Condition, in.Reason = discovery.ConditionNotReady, "warming up" }},
		{"serving", func(in *discovery.Instance) { in.Condition, in.Reason = discovery.ConditionServing, "" }},
		{"weight", func(in *discovery.Instance) { in.Weight = 300 }},
		{"zone", func(in *discovery.Instance) { in.Zone = "eu-west-1a" }},
		{"draining", func(in *discovery.Instance) { in.Condition, in.Reason = discovery.ConditionDraining, "shutting down" }},
	}
	prev := v
	for _, st := range steps {
		next := prev.Clone()
		st.edit(&next)
		e.register(a, next)
		// One set change: the watcher's next new set is the updated one,
		// never a set without the instance or with two of it in between.
		// (The same set again is tolerated: a watcher returns it once the
		// registry is back after an outage.)
		for {
			got := e.next(w)
			if discovery.EqualSets(got, set(other, next)) {
				break
			}
			if !discovery.EqualSets(got, set(other, prev)) {
				t.Fatalf("update to %s: the watcher saw %s after %s; want %s at once",
					st.name, fmtSet(got), fmtSet(set(other, prev)), fmtSet(set(other, next)))
			}
		}
		e.waitResolve(b, payments, set(other, next))
		if e.caps.Status {
			st, err := e.reporter(a).Status(payments, "p-1")
			if err != nil || st.State != discovery.StateRegistered || !st.Instance.Equal(next) {
				t.Errorf("Status after the update = %v (instance %s), %v; want registered with %s",
					st, fmtInstance(st.Instance), err, fmtInstance(next))
			}
		}
		prev = next
	}
	e.quiet(w)
}

func testInvalidServingFieldsWriteNothing(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	held := inst(payments, "p-1", "10.0.0.7:8080")
	e.register(a, held)
	cases := []struct {
		name  string
		edit  func(*discovery.Instance)
		field string
	}{
		{"negative weight", func(in *discovery.Instance) { in.Weight = -1 }, "Weight"},
		{"weight over MaxWeight", func(in *discovery.Instance) { in.Weight = discovery.MaxWeight + 1 }, "Weight"},
		{"zone with a slash", func(in *discovery.Instance) { in.Zone = "eu/west" }, "Zone"},
		{"zone with a space", func(in *discovery.Instance) { in.Zone = "eu west" }, "Zone"},
		{"zone too long", func(in *discovery.Instance) { in.Zone = strings.Repeat("z", discovery.MaxNameLen+1) }, "Zone"},
		{"maintenance published by the process", func(in *discovery.Instance) { in.Condition = discovery.ConditionMaintenance }, "Condition"},
		{"unknown condition", func(in *discovery.Instance) { in.Condition = 200 }, "Condition"},
		{"reason with a newline", func(in *discovery.Instance) { in.Reason = "a\nb" }, "Reason"},
		{"reason too long", func(in *discovery.Instance) { in.Reason = strings.Repeat("r", discovery.MaxReasonLen+1) }, "Reason"},
	}
	for _, tc := range cases {
		for _, id := range []string{"p-1", "p-2"} { // an update of a held instance, and a new one
			in := inst(payments, id, "10.0.0.8:8080")
			tc.edit(&in)
			err := a.Register(e.ctx(), in)
			var fe *discovery.FieldError
			if !errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("%s: Register(%s) = %v; want a *discovery.FieldError naming %s, wrapping ErrInvalidInstance",
					tc.name, fmtInstance(in), err, tc.field)
			}
		}
	}
	// Writes are ordered: once a later write is visible, so would be the
	// invalid ones had they been written.
	ok := inst(payments, "ok-1", "10.0.0.9:8080")
	e.register(a, ok)
	e.waitResolve(b, payments, set(ok, held))
	e.waitResolve(a, payments, set(ok, held))
}

func testValueWithoutServingFieldsReadsAsServing(t *testing.T, e *env) {
	vw, ok := e.h.(ValueWriter)
	if !ok {
		t.Fatalf("Capabilities.Values is true, but the harness %T does not implement discoverytest.ValueWriter", e.h)
	}
	b := e.backend()
	if err := vw.WriteValue(e.ctx(), payments, "p-1", []byte(legacyValue)); err != nil {
		t.Fatalf("WriteValue: %v", err)
	}
	want := set(inst(payments, "p-1", "10.0.0.7:8080", "version", "1.4.2"))
	e.waitResolve(b, payments, want)
	got := e.resolve(b, payments)
	if in := got[0]; in.Condition != discovery.ConditionServing || in.EffectiveWeight() != discovery.DefaultWeight || in.Zone != "" {
		t.Errorf("an old value read as condition %v, weight %d, zone %q; want serving, %d, no zone",
			in.Condition, in.EffectiveWeight(), in.Zone, discovery.DefaultWeight)
	}
	if routed, fallback := discovery.Routable(got); len(routed) != 1 || fallback {
		t.Errorf("Routable(old value) = %s, fallback %v; want it routed", fmtSet(routed), fallback)
	}
	if got := e.next(e.watch(b, payments)); !discovery.EqualSets(got, want) {
		t.Errorf("first Next = %s; want %s", fmtSet(got), fmtSet(want))
	}
}
