package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// maintenanceSubtests are the rules of operators' maintenance overrides
// (discovery.Maintainer). They run when the harness's backends implement
// discovery.Maintainer, and are skipped otherwise.
var maintenanceSubtests = []subtest{
	{name: "MaintenanceOverridesCondition", run: testMaintenanceOverridesCondition},
	{name: "MaintenanceOfWholeService", run: testMaintenanceOfWholeService},
	{name: "MaintenanceBeforeRegistration", run: testMaintenanceBeforeRegistration},
	{name: "MaintenanceSurvivesProcessRestart", run: testMaintenanceSurvivesProcessRestart},
	{name: "MaintenanceExpires", run: testMaintenanceExpires},
	{name: "InvalidMaintenanceWritesNothing", run: testInvalidMaintenanceWritesNothing},
}

// maintainer makes a backend, as an operator's tool opens one, and returns
// it as a discovery.Maintainer; it skips the subtest if the backend is not
// one.
func (e *env) maintainer() discovery.Maintainer {
	e.t.Helper()
	b := e.backend()
	m, ok := b.(discovery.Maintainer)
	if !ok {
		e.t.Skipf("skipped: %T does not implement discovery.Maintainer", b)
	}
	return m
}

// inMaintenance returns in as readers show it under an override with reason.
func inMaintenance(in discovery.Instance, reason string) discovery.Instance {
	in = in.Clone()
	in.Condition, in.Reason = discovery.ConditionMaintenance, reason
	return in
}

// change waits for w's next new set, which must be want: a set equal to
// prev in between is tolerated (a watcher returns it again after an
// outage), any other fails the subtest. It checks that a change reaches a
// watcher as one set change.
func (e *env) change(w discovery.Watcher, what string, prev, want []discovery.Instance) {
	e.t.Helper()
	for {
		got := e.next(w)
		if discovery.EqualSets(got, want) {
			return
		}
		if !discovery.EqualSets(got, prev) {
			e.t.Fatalf("%s: the watcher saw %s after %s; want %s at once", what, fmtSet(got), fmtSet(prev), fmtSet(want))
		}
	}
}

func (e *env) setMaintenance(m discovery.Maintainer, target discovery.Key, reason string, d time.Duration) {
	e.t.Helper()
	if err := m.SetMaintenance(e.ctx(), target, reason, d); err != nil {
		e.t.Fatalf("SetMaintenance(%s, %q, %v): %v", target, reason, d, err)
	}
}

func (e *env) clearMaintenance(m discovery.Maintainer, target discovery.Key) {
	e.t.Helper()
	if err := m.ClearMaintenance(e.ctx(), target); err != nil {
		e.t.Fatalf("ClearMaintenance(%s): %v", target, err)
	}
}

// testMaintenanceOverridesCondition: an override shows, to every handle's
// Resolve and to a watcher as one set change, as maintenance with the
// operator's reason; no RoutePolicy routes to it; the process's own
// updates change its other fields but never clear the override; clearing
// it restores the process's own condition, as one set change.
func testMaintenanceOverridesCondition(t *testing.T, e *env) {
	op := e.maintainer()
	a, b := e.backend(), e.backend()
	other := inst(payments, "p-0", "10.0.0.9:8080")
	p1 := inst(payments, "p-1", "10.0.0.7:8080", "version", "1")
	e.register(a, other, p1)
	w := e.watch(b, payments)
	e.nextUntil(w, set(other, p1))

	key := p1.Key()
	e.setMaintenance(op, key, "disk replacement", 0)
	held := set(other, inMaintenance(p1, "disk replacement"))
	e.change(w, "SetMaintenance", set(other, p1), held)
	e.waitResolve(b, payments, held)
	e.waitResolve(a, payments, held)
	for _, p := range []discovery.RoutePolicy{{}, {NoFallback: true}} {
		if routed, _ := p.Select(e.resolve(b, payments)); !discovery.EqualSets(routed, set(other)) {
			t.Errorf("RoutePolicy%+v.Select routes to %s; want only %s", p, fmtSet(routed), fmtSet(set(other)))
		}
	}
	if list, err := op.ListMaintenance(e.ctx(), payments); err != nil || len(list) != 1 ||
		list[0].Target() != key || list[0].Reason != "disk replacement" || !list[0].Until.IsZero() {
		t.Errorf("ListMaintenance = %+v, %v; want the override of %s without an end", list, err, key)
	}

	// The process goes on publishing its own instance: the override stays.
	p1b := p1.Clone()
	p1b.Metadata["version"] = "2"
	p1b.Condition, p1b.Reason = discovery.ConditionNotReady, "warming up"
	e.register(a, p1b)
	prev := held
	held = set(other, inMaintenance(p1b, "disk replacement"))
	e.change(w, "the process's update under the override", prev, held)
	e.waitResolve(b, payments, held)

	e.clearMaintenance(op, key)
	e.change(w, "ClearMaintenance", held, set(other, p1b))
	e.waitResolve(b, payments, set(other, p1b))
	e.quiet(w)
	if err := op.ClearMaintenance(e.ctx(), key); !errors.Is(err, discovery.ErrNoMaintenance) {
		t.Errorf("ClearMaintenance of a cleared override = %v; want ErrNoMaintenance", err)
	}
}

// testMaintenanceOfWholeService: an override of a service applies to
// every instance of it, present and future, and to no other service; an
// instance's own override shows its own reason; clearing the service's
// leaves the instance's.
func testMaintenanceOfWholeService(t *testing.T, e *env) {
	op := e.maintainer()
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:8080")
	p2 := inst(payments, "p-2", "10.0.0.2:8080")
	neighbour := inst(payments+"-v2", "p-1", "10.0.0.3:8080")
	e.register(a, p1, p2, neighbour)
	w := e.watch(b, payments)
	e.nextUntil(w, set(p1, p2))

	svc := discovery.Key{Service: payments}
	e.setMaintenance(op, svc, "region evacuation", 0)
	held := set(inMaintenance(p1, "region evacuation"), inMaintenance(p2, "region evacuation"))
	e.change(w, "SetMaintenance of the service", set(p1, p2), held)
	e.waitResolve(b, neighbour.Service, set(neighbour))

	e.setMaintenance(op, p2.Key(), "disk", 0)
	prev := held
	held = set(inMaintenance(p1, "region evacuation"), inMaintenance(p2, "disk"))
	e.change(w, "SetMaintenance of an instance under its service's override", prev, held)

	p3 := inst(payments, "p-3", "10.0.0.4:8080")
	e.register(a, p3)
	prev = held
	held = set(inMaintenance(p1, "region evacuation"), inMaintenance(p2, "disk"), inMaintenance(p3, "region evacuation"))
	e.change(w, "an instance registered under its service's override", prev, held)

	e.clearMaintenance(op, svc)
	prev = held
	held = set(p1, inMaintenance(p2, "disk"), p3)
	e.change(w, "ClearMaintenance of the service", prev, held)
	e.waitResolve(a, payments, held)
	if list, err := op.ListMaintenance(e.ctx(), payments); err != nil || len(list) != 1 || list[0].Target() != p2.Key() {
		t.Errorf("ListMaintenance = %+v, %v; want the override of %s alone", list, err, p2.Key())
	}
}

// testMaintenanceBeforeRegistration: an override of an instance that is
// not registered applies when the instance appears.
func testMaintenanceBeforeRegistration(t *testing.T, e *env) {
	op := e.maintainer()
	a, b := e.backend(), e.backend()
	p9 := inst(payments, "p-9", "10.0.0.9:8080")
	e.setMaintenance(op, p9.Key(), "not yet", 0)
	w := e.watch(b, payments)
	e.nextUntil(w, set())
	e.register(a, p9)
	e.change(w, "an instance registered under its override", set(), set(inMaintenance(p9, "not yet")))
	e.waitResolve(b, payments, set(inMaintenance(p9, "not yet")))
}

// testMaintenanceSurvivesProcessRestart: the process that owns the
// instance closes (its instance leaves) and a new one registers it again:
// the override still holds it.
func testMaintenanceSurvivesProcessRestart(t *testing.T, e *env) {
	op := e.maintainer()
	b := e.backend()
	a, err := e.h.MakeBackend(e.ctx())
	if err != nil {
		t.Fatalf("MakeBackend: %v", err)
	}
	p1 := inst(payments, "p-1", "10.0.0.7:8080")
	e.register(a, p1)
	e.setMaintenance(op, p1.Key(), "disk", 0)
	e.waitResolve(b, payments, set(inMaintenance(p1, "disk")))
	if err := a.Close(); err != nil {
		t.Fatalf("Close of the owning process: %v", err)
	}
	e.waitResolve(b, payments, set())
	a2 := e.backend()
	e.register(a2, p1)
	e.waitResolve(b, payments, set(inMaintenance(p1, "disk")))
}

// testMaintenanceExpires: an override with a duration ends by itself, and
// a watcher sees the instance serving again.
func testMaintenanceExpires(t *testing.T, e *env) {
	op := e.maintainer()
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.7:8080")
	e.register(a, p1)
	w := e.watch(b, payments)
	e.nextUntil(w, set(p1))
	const d = 2 * time.Second
	start := time.Now()
	e.setMaintenance(op, p1.Key(), "reboot", d)
	e.change(w, "SetMaintenance for 2s", set(p1), set(inMaintenance(p1, "reboot")))
	if list, err := op.ListMaintenance(e.ctx(), payments); err != nil || len(list) != 1 || list[0].Until.Sub(list[0].Since) != d {
		t.Errorf("ListMaintenance = %+v, %v; want one override ending %v after it was set", list, err, d)
	}
	e.change(w, "the override's end", set(inMaintenance(p1, "reboot")), set(p1))
	if took := time.Since(start); took < d-100*time.Millisecond {
		t.Errorf("the override of %v ended after %v", d, took)
	}
	e.waitResolve(b, payments, set(p1))
}

// testInvalidMaintenanceWritesNothing: bad input is a *FieldError naming
// the field, and nothing changes.
func testInvalidMaintenanceWritesNothing(t *testing.T, e *env) {
	op := e.maintainer()
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.7:8080")
	e.register(a, p1)
	key := p1.Key()
	cases := []struct {
		name   string
		target discovery.Key
		reason string
		d      time.Duration
		field  string
	}{
		{"empty reason", key, "", 0, "Reason"},
		{"reason too long", key, strings.Repeat("r", discovery.MaxReasonLen+1), 0, "Reason"},
		{"reason with a newline", key, "a\nb", 0, "Reason"},
		{"reason not UTF-8", key, "a\xffb", 0, "Reason"},
		{"negative duration", key, "disk", -time.Second, "Duration"},
		{"service with a slash", discovery.Key{Service: "pay/ments", ID: "p-1"}, "disk", 0, "Service"},
		{"empty service", discovery.Key{ID: "p-1"}, "disk", 0, "Service"},
		{"ID with a tilde", discovery.Key{Service: payments, ID: "~maint"}, "disk", 0, "ID"},
	}
	for _, tc := range cases {
		err := op.SetMaintenance(e.ctx(), tc.target, tc.reason, tc.d)
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: SetMaintenance = %v; want a *discovery.FieldError naming %s", tc.name, err, tc.field)
		}
	}
	err := op.ClearMaintenance(e.ctx(), discovery.Key{Service: payments, ID: "p/1"})
	var fe *discovery.FieldError
	if !errors.As(err, &fe) || fe.Field != "ID" {
		t.Errorf("ClearMaintenance of an invalid ID = %v; want a *discovery.FieldError naming ID", err)
	}
	if err := op.ClearMaintenance(e.ctx(), key); !errors.Is(err, discovery.ErrNoMaintenance) {
		t.Errorf("ClearMaintenance without an override = %v; want ErrNoMaintenance", err)
	}
	// Writes are ordered: once a later write is visible, so would the
	// invalid ones be had they been written.
	ok := inst(payments, "ok-1", "10.0.0.9:8080")
	e.register(a, ok)
	e.waitResolve(b, payments, set(ok, p1))
	if list, err := op.ListMaintenance(e.ctx(), payments); err != nil || len(list) != 0 {
		t.Errorf("ListMaintenance after invalid calls = %+v, %v; want none", list, err)
	}
}

// testFaultMaintenanceSurvivesRestart: overrides (one without a duration,
// one for an hour, one of a whole service with no instance) are kept
// through a restart of the registry: after it a watcher, Resolve and the
// owner registering again all see the instances in maintenance, and the
// listing holds the three. An operator view, where the backend has one,
// lists the instances in maintenance and counts only instances.
func testFaultMaintenanceSurvivesRestart(t *testing.T, f *faultEnv) {
	op := f.maintainer()
	owner, reader := f.backend(), f.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	f.register(owner, p1, p2)
	f.setMaintenance(op, p1.Key(), "disk", 0)
	f.setMaintenance(op, p2.Key(), "reboot", time.Hour)
	orders := discovery.Key{Service: "orders"}
	f.setMaintenance(op, orders, "migration", 0)
	want := set(inMaintenance(p1, "disk"), inMaintenance(p2, "reboot"))
	w := f.watch(reader, payments)
	f.nextUntil(w, want)
	if v, ok := reader.(discovery.OperatorView); ok {
		infos, skipped, err := v.Instances(f.ctx(), payments)
		var got []discovery.Instance
		for _, in := range infos {
			got = append(got, in.Instance)
		}
		if err != nil || !slices.EqualFunc(got, want, discovery.Instance.Equal) || len(skipped) != 0 {
			t.Errorf("Instances(%s) = %s, skipped %v, %v; want %s, nothing skipped", payments, fmtSet(got), skipped, err, fmtSet(want))
		}
		services, skipped, err := v.Services(f.ctx())
		if wantS := []discovery.ServiceSummary{{Service: payments, Instances: 2}}; err != nil || !slices.Equal(services, wantS) || len(skipped) != 0 {
			t.Errorf("Services = %+v, skipped %v, %v; want %+v (an override is no instance), nothing skipped", services, skipped, err, wantS)
		}
	}

	f.stop()
	f.start()
	// (A watcher sees the same set again only if it saw the outage: the
	// changes below show its view after the restart.) Each read is bounded
	// to two seconds and tried again: one made as the registry came back
	// has been seen to wait out its whole context (NATS, beside other
	// tests), which is not what this subtest looks at.
	f.eventuallyWithin(f.opts.TTL+Timeout, fmt.Sprintf("Resolve(%q) = %s after the restart", payments, fmtSet(want)), func(context.Context) (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got, err := reader.Resolve(ctx, payments)
		if err != nil {
			return false, "error: " + err.Error()
		}
		return discovery.EqualSets(got, want), fmtSet(got)
	})
	// The owner restarts: Close (its instances leave) and a new backend
	// registers them again.
	if err := owner.Close(); err != nil {
		t.Fatalf("Close of the owner: %v", err)
	}
	f.nextUntil(w, set())
	f.register(f.backend(), p1, p2)
	f.nextUntil(w, want)
	// The operator's handle may still be reconnecting: its calls fail
	// with ErrUnavailable until it has.
	f.eventually("the operator's handle to reach the registry again", func(ctx context.Context) (bool, string) {
		_, err := op.ListMaintenance(ctx, payments)
		return !errors.Is(err, discovery.ErrUnavailable), fmt.Sprint(err)
	})
	list, err := op.ListMaintenance(f.ctx(), payments)
	i := slices.IndexFunc(list, func(m discovery.Maintenance) bool { return m.ID == p2.ID })
	if err != nil || len(list) != 2 || i < 0 || list[i].Until.Sub(list[i].Since) != time.Hour {
		t.Errorf("ListMaintenance(%s) = %+v, %v; want p-1's, and p-2's for an hour", payments, list, err)
	}
	if list, err := op.ListMaintenance(f.ctx(), orders.Service); err != nil || len(list) != 1 || list[0].Target() != orders {
		t.Errorf("ListMaintenance(%s) = %+v, %v; want the whole service's", orders.Service, list, err)
	}

	f.clearMaintenance(op, p2.Key())
	f.nextUntil(w, set(inMaintenance(p1, "disk"), p2))
}
