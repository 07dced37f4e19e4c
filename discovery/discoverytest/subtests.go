package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// subtest is one named rule of the contract.
type subtest struct {
	name  string
	needs Capabilities
	run   func(t *testing.T, e *env)

	// faults marks a fault scenario (faults.go): it runs runFaults, with
	// a FaultHarness of its own, instead of run.
	faults    bool
	runFaults func(t *testing.T, caps Capabilities)
}

// subtests lists the suite in the order Run runs it.
var subtests = []subtest{
	{name: "RegisterThenResolveFromAnotherHandle", run: testRegisterThenResolveFromAnotherHandle},
	{name: "RegisterIsIdempotent", run: testRegisterIsIdempotent},
	{name: "ReregisterUpdatesMetadataInPlace", run: testReregisterUpdatesMetadataInPlace},
	{name: "RegisterCopiesTheInstance", run: testRegisterCopiesTheInstance},
	{name: "RegisterWithCancelledContextLeavesNothing", run: testRegisterWithCancelledContextLeavesNothing},
	{name: "InvalidInstances", run: testInvalidInstances},
	{name: "EmptyIDDerivedFromAddress", run: testEmptyIDDerivedFromAddress},
	{name: "DeregisterRemoves", run: testDeregisterRemoves},
	{name: "DeregisterUnknownIsErrNotRegistered", run: testDeregisterUnknownIsErrNotRegistered},
	{name: "ServicesAreIsolated", run: testServicesAreIsolated},
	{name: "ResolveSortedByID", run: testResolveSortedByID},
	{name: "ResolveReturnsCopies", run: testResolveReturnsCopies},
	{name: "ResolveUnknownServiceIsEmpty", run: testResolveUnknownServiceIsEmpty},
	{name: "ResolveAndWatchRejectInvalidServiceNames", run: testResolveAndWatchRejectInvalidServiceNames},
	{name: "WatchFirstNextIsCurrentSet", run: testWatchFirstNextIsCurrentSet},
	{name: "WatchNextAfterChange", run: testWatchNextAfterChange},
	{name: "WatchCoalescesQuickChanges", run: testWatchCoalescesQuickChanges},
	{name: "WatchReturnsCopies", run: testWatchReturnsCopies},
	{name: "WatchersAreIndependent", run: testWatchersAreIndependent},
	{name: "WatchStopUnblocksNext", run: testWatchStopUnblocksNext},
	{name: "WatchContextEndUnblocksNext", run: testWatchContextEndUnblocksNext},
	{name: "WatchEndsWithItsContext", run: testWatchEndsWithItsContext},
	{name: "WatchSeesOtherHandle", run: testWatchSeesOtherHandle},
	{name: "CloseDeregistersEverything", run: testCloseDeregistersEverything},
	{name: "CloseStopsWatchers", run: testCloseStopsWatchers},
	{name: "CallsAfterCloseAreErrClosed", run: testCallsAfterCloseAreErrClosed},
	{name: "CloseIsIdempotent", run: testCloseIsIdempotent},
	{name: "ConcurrentRegisterDeregister", run: testConcurrentRegisterDeregister},
	{name: "StatusTransitions", needs: Capabilities{Status: true}, run: testStatusTransitions},
	{name: "StatusOfUnknownIsErrNotRegistered", needs: Capabilities{Status: true}, run: testStatusOfUnknownIsErrNotRegistered},
	{name: "StatusesListsRegistrations", needs: Capabilities{Status: true}, run: testStatusesListsRegistrations},
	{name: "SubscribeStatusStartsWithCurrent", needs: Capabilities{Status: true}, run: testSubscribeStatusStartsWithCurrent},
	{name: "ConflictLaterWriterWins", needs: Capabilities{Conflict: true}, run: testConflictLaterWriterWins},
	{name: "ConflictEarlierWriterDeregisters", needs: Capabilities{Conflict: true}, run: testConflictEarlierWriterDeregisters},
}

// allSubtests lists every subtest Run runs: the core ones, those on the
// serving fields of an instance (serving.go), those on operators'
// maintenance overrides (maintenance.go), then the fault scenarios
// (faults.go).
func allSubtests() []subtest {
	all := append(append([]subtest(nil), subtests...), servingSubtests...)
	all = append(all, maintenanceSubtests...)
	return append(all, faultsAsSubtests()...)
}

const payments = "payments"

func testRegisterThenResolveFromAnotherHandle(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.7:8080", "zone", "a", "version", "1.4.2")
	e.register(a, p1)
	e.waitResolve(b, payments, set(p1))
	e.waitResolve(a, payments, set(p1))
}

func testRegisterIsIdempotent(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.7:8080", "zone", "a")
	e.register(a, p1, p1, p1)
	e.waitResolve(b, payments, set(p1))
	if e.caps.Status {
		if st, err := e.reporter(a).Status(payments, "p-1"); err != nil || st.State != discovery.StateRegistered {
			t.Errorf("Status after registering three times = %v, %v; want registered", st, err)
		}
	}
	e.deregister(a, p1)
	e.waitResolve(b, payments, set())
	if err := a.Deregister(e.ctx(), p1); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("second Deregister of an instance registered three times: %v; want ErrNotRegistered", err)
	}
}

func testReregisterUpdatesMetadataInPlace(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	v1 := inst(payments, "p-1", "10.0.0.7:8080", "zone", "a", "version", "1")
	v2 := inst(payments, "p-1", "10.0.0.7:9090", "zone", "b", "weight", "10")
	e.register(a, v1)
	w := e.watch(b, payments)
	e.nextUntil(w, set(v1))

	e.register(a, v2)
	// In place: no set in between without the instance or with two of it.
	for {
		got := e.next(w)
		if discovery.EqualSets(got, set(v2)) {
			break
		}
		if !discovery.EqualSets(got, set(v1)) {
			t.Fatalf("while %s was updated in place a watcher saw %s; want only %s then %s",
				v1.Key(), fmtSet(got), fmtSet(set(v1)), fmtSet(set(v2)))
		}
	}
	e.waitResolve(b, payments, set(v2))
	e.waitResolve(a, payments, set(v2))
	if e.caps.Status {
		st, err := e.reporter(a).Status(payments, "p-1")
		if err != nil || st.State != discovery.StateRegistered || !st.Instance.Equal(v2) {
			t.Errorf("Status after the update = %v (instance %s), %v; want registered with %s",
				st, fmtInstance(st.Instance), err, fmtInstance(v2))
		}
	}
}

func testRegisterCopiesTheInstance(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	md := map[string]string{"zone": "a"}
	e.register(a, discovery.Instance{Service: payments, ID: "p-1", Address: "10.0.0.7:8080", Metadata: md})
	// The caller's map is its own again once Register returns.
	md["zone"] = "changed"
	md["added"] = "yes"
	want := set(inst(payments, "p-1", "10.0.0.7:8080", "zone", "a"))
	e.waitResolve(b, payments, want)
	e.waitResolve(a, payments, want)
}

func testRegisterWithCancelledContextLeavesNothing(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Register(cancelled, inst(payments, "p-1", "10.0.0.1:80")); !errors.Is(err, context.Canceled) {
		t.Errorf("Register with a cancelled context: %v; want context.Canceled", err)
	}
	expired, cancel := context.WithTimeout(context.Background(), -1)
	defer cancel()
	if err := a.Register(expired, inst(payments, "p-2", "10.0.0.2:80")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Register with an expired context: %v; want context.DeadlineExceeded", err)
	}
	// Writes are ordered: once a later write is visible, so would be the
	// failed ones had they been written.
	ok := inst(payments, "p-3", "10.0.0.3:80")
	e.register(a, ok)
	e.waitResolve(b, payments, set(ok))
	e.waitResolve(a, payments, set(ok))
	for _, id := range []string{"p-1", "p-2"} {
		if err := a.Deregister(e.ctx(), inst(payments, id, "")); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Deregister(%s) after its Register failed: %v; want ErrNotRegistered", id, err)
		}
		if e.caps.Status {
			if st, err := e.reporter(a).Status(payments, id); !errors.Is(err, discovery.ErrNotRegistered) {
				t.Errorf("Status(%s) after its Register failed = %v, %v; want ErrNotRegistered", id, st, err)
			}
		}
	}
}

func testInvalidInstances(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	const addr = "10.0.0.7:8080"
	valid := func(edit func(*discovery.Instance)) discovery.Instance {
		in := inst(payments, "p-1", addr, "zone", "a")
		edit(&in)
		return in
	}
	withService := func(s string) discovery.Instance {
		return valid(func(in *discovery.Instance) { in.Service = s })
	}
	withID := func(id string) discovery.Instance {
		return valid(func(in *discovery.Instance) { in.ID = id })
	}
	withAddress := func(a string) discovery.Instance {
		return valid(func(in *discovery.Instance) { in.Address = a })
	}
	withMetadata := func(k, v string) discovery.Instance {
		return valid(func(in *discovery.Instance) { in.Metadata = map[string]string{k: v} })
	}
	cases := []struct {
		name  string
		in    discovery.Instance
		field string // FieldError.Field
	}{
		{"empty service", withService(""), "Service"},
		{"service with a slash", withService("pay/ments"), "Service"},
		{"service with a space", withService("pay ments"), "Service"},
		{"service not ASCII", withService("paymënts"), "Service"},
		{"service dot", withService("."), "Service"},
		{"service dot dot", withService(".."), "Service"},
		{"service too long", withService(strings.Repeat("s", discovery.MaxNameLen+1)), "Service"},
		{"ID with a slash", withID("p/1"), "ID"},
		{"ID with a colon", withID("p:1"), "ID"},
		{"ID dot dot", withID(".."), "ID"},
		{"ID too long", withID(strings.Repeat("i", discovery.MaxNameLen+1)), "ID"},
		{"empty address", withAddress(""), "Address"},
		{"address without port", withAddress("10.0.0.7"), "Address"},
		{"port 0", withAddress("10.0.0.7:0"), "Address"},
		{"port 65536", withAddress("10.0.0.7:65536"), "Address"},
		{"port negative", withAddress("10.0.0.7:-1"), "Address"},
		{"port http", withAddress("10.0.0.7:http"), "Address"},
		{"port empty", withAddress("10.0.0.7:"), "Address"},
		{"port with leading zero", withAddress("10.0.0.7:080"), "Address"},
		{"IPv6 without brackets", withAddress("::1:8080"), "Address"},
		{"IPv6 without brackets, long form", withAddress("fe80::1:2:8080"), "Address"},
		{"bracketed host not IPv6", withAddress("[not:an:ip]:8080"), "Address"},
		{"bracketed IPv4", withAddress("[10.0.0.7]:8080"), "Address"},
		{"empty host", withAddress(":8080"), "Address"},
		{"host starting with a dash", withAddress("-host:8080"), "Address"},
		{"host with a space", withAddress("my host:8080"), "Address"},
		{"host too long", withAddress(strings.Repeat("h", discovery.MaxHostLen+1) + ":8080"), "Address"},
		{"empty metadata key", withMetadata("", "x"), "Metadata"},
		{"metadata key not printable", withMetadata("zo\x00ne", "a"), "Metadata"},
		{"metadata value not UTF-8", withMetadata("zone", "\xff"), "Metadata[zone]"},
		{"metadata over 64 KiB", withMetadata("blob", strings.Repeat("x", discovery.MaxEncodedLen)), "Metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Register(e.ctx(), tc.in)
			if !errors.Is(err, discovery.ErrInvalidInstance) {
				t.Fatalf("Register(%s) = %v; want an error wrapping ErrInvalidInstance", fmtInstance(tc.in), err)
			}
			var fe *discovery.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("Register(%s) = %v; want a *discovery.FieldError naming %s", fmtInstance(tc.in), err, tc.field)
			}
		})
	}
	// Writes are ordered: once a later write is visible, so would be the
	// invalid ones had they been written.
	ok := inst(payments, "ok-1", addr)
	e.register(a, ok)
	e.waitResolve(b, payments, set(ok))
	e.waitResolve(a, payments, set(ok))
	if e.caps.Status {
		got := e.reporter(a).Statuses()
		if len(got) != 1 || got[0].Instance.Key() != ok.Key() {
			t.Errorf("Statuses() after the invalid registrations = %v; want only %s", got, ok.Key())
		}
	}
}

func testEmptyIDDerivedFromAddress(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	v4 := discovery.Instance{Service: payments, Address: "10.0.0.7:8080", Metadata: map[string]string{"zone": "a"}}
	v6 := discovery.Instance{Service: payments, Address: "[::1]:8080"}
	e.register(a, v4, v6)
	v4id, v6id := v4, v6
	v4id.ID = discovery.IDFromAddress(v4.Address) // "10.0.0.7-8080"
	v6id.ID = discovery.IDFromAddress(v6.Address) // "--1-8080"
	e.waitResolve(b, payments, set(v6id, v4id))
	if e.caps.Status {
		if st, err := e.reporter(a).Status(payments, v4id.ID); err != nil || st.State != discovery.StateRegistered {
			t.Errorf("Status(%q, %q) = %v, %v; want registered", payments, v4id.ID, st, err)
		}
	}
	// Deregister derives the ID the same way.
	e.deregister(a, discovery.Instance{Service: payments, Address: v4.Address})
	e.waitResolve(b, payments, set(v6id))
	e.deregister(a, discovery.Instance{Service: payments, ID: v6id.ID})
	e.waitResolve(b, payments, set())
}

func testDeregisterRemoves(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p2 := inst(payments, "p-2", "10.0.0.2:80", "zone", "b")
	e.register(a, p1, p2)
	e.waitResolve(b, payments, set(p1, p2))
	w := e.watch(b, payments)
	e.nextUntil(w, set(p1, p2))

	// Service and ID are enough.
	e.deregister(a, discovery.Instance{Service: payments, ID: "p-1"})
	e.nextUntil(w, set(p2))
	e.waitResolve(b, payments, set(p2))
	e.waitResolve(a, payments, set(p2))

	e.deregister(a, p2)
	e.nextUntil(w, set())
	e.waitResolve(b, payments, set())
}

func testDeregisterUnknownIsErrNotRegistered(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	theirs := inst(payments, "p-9", "10.0.0.9:80")
	e.register(a, p1)
	e.register(b, theirs)
	e.waitResolve(a, payments, set(p1, theirs))
	cases := []struct {
		name string
		in   discovery.Instance
	}{
		{"unknown service", inst("orders", "p-1", "10.0.0.1:80")},
		{"unknown ID", inst(payments, "p-2", "10.0.0.2:80")},
		{"unknown derived ID", discovery.Instance{Service: payments, Address: "10.0.0.3:80"}},
		{"another handle's instance", theirs},
	}
	for _, tc := range cases {
		if err := a.Deregister(e.ctx(), tc.in); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("%s: Deregister(%s) = %v; want an error wrapping ErrNotRegistered", tc.name, fmtInstance(tc.in), err)
		}
	}
	e.deregister(a, p1)
	if err := a.Deregister(e.ctx(), p1); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("second Deregister(%s) = %v; want an error wrapping ErrNotRegistered", fmtInstance(p1), err)
	}
	// The other handle's instance is untouched.
	e.waitResolve(a, payments, set(theirs))
	e.waitResolve(b, payments, set(theirs))
}

func testServicesAreIsolated(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	// Names that share prefixes, differ in case, or differ only after a
	// separator catch key layouts that leak one service into another.
	services := []string{"pay", payments, "payments.eu", "payments-v2", "Payments"}
	want := make(map[string][]discovery.Instance)
	for i, svc := range services {
		in := inst(svc, "i-1", fmt.Sprintf("10.0.1.%d:80", i+1), "service", svc)
		e.register(a, in)
		want[svc] = set(in)
	}
	extra := inst(payments, "i-2", "10.0.2.1:80")
	e.register(a, extra)
	want[payments] = append(want[payments], extra)
	for _, svc := range services {
		e.waitResolve(b, svc, want[svc])
	}
	w := e.watch(b, "pay")
	e.nextUntil(w, want["pay"])

	e.deregister(a, inst(payments, "i-1", ""))
	want[payments] = set(extra)
	e.waitResolve(b, payments, want[payments])
	for _, svc := range services {
		if got := e.resolve(b, svc); !discovery.EqualSets(got, want[svc]) {
			t.Errorf("Resolve(%q) = %s; want %s", svc, fmtSet(got), fmtSet(want[svc]))
		}
	}
	e.quiet(w)
}

func testResolveSortedByID(t *testing.T, e *env) {
	a, b, c := e.backend(), e.backend(), e.backend()
	// Registered out of order, through two handles.
	ids := []string{"b", "a-2", "c", "A", "a_1", "a-10", "0", "a.1", "a-1"}
	for i, id := range ids {
		e.register([]discovery.Backend{a, b}[i%2], inst(payments, id, fmt.Sprintf("10.0.0.%d:80", i+1)))
	}
	// Byte order: '-' < '.' < digits < upper case < '_' < lower case.
	sorted := []string{"0", "A", "a-1", "a-10", "a-2", "a.1", "a_1", "b", "c"}
	want := make([]discovery.Instance, len(sorted))
	for i, id := range sorted {
		for j, orig := range ids {
			if orig == id {
				want[i] = inst(payments, id, fmt.Sprintf("10.0.0.%d:80", j+1))
			}
		}
	}
	e.waitResolve(c, payments, want)
	e.waitResolve(a, payments, want)
	w := e.watch(c, payments)
	if got := e.next(w); !discovery.EqualSets(got, want) {
		t.Errorf("first Watcher.Next = %s; want %s", fmtSet(got), fmtSet(want))
	}
}

func testResolveReturnsCopies(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p2 := inst(payments, "p-2", "10.0.0.2:80", "zone", "b")
	e.register(a, p1, p2)
	want := set(p1, p2)
	e.waitResolve(b, payments, want)
	for _, r := range []discovery.Backend{a, b} {
		got := e.resolve(r, payments)
		got[0].Metadata["zone"] = "changed"
		got[0].Metadata["added"] = "yes"
		got[1].ID = "changed"
		got[1].Address = "10.9.9.9:99"
		got[0], got[1] = got[1], got[0]
		if again := e.resolve(r, payments); !discovery.EqualSets(again, want) {
			t.Errorf("Resolve after modifying the previous result = %s; want %s", fmtSet(again), fmtSet(want))
		}
	}
	e.waitResolve(b, payments, want)
}

func testResolveUnknownServiceIsEmpty(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	e.register(a, inst(payments, "p-1", "10.0.0.1:80"))
	for _, r := range []discovery.Backend{a, b} {
		if got := e.resolve(r, "nothing-here"); len(got) != 0 {
			t.Errorf("Resolve of a service never registered = %s; want an empty set", fmtSet(got))
		}
	}
	o1 := inst("orders", "o-1", "10.0.0.2:80")
	e.register(a, o1)
	e.waitResolve(b, "orders", set(o1))
	e.deregister(a, o1)
	e.waitResolve(b, "orders", set())
	e.waitResolve(a, "orders", set())
}

// testResolveAndWatchRejectInvalidServiceNames: a service name that
// Instance.Validate would reject can hold no instance; Resolve and Watch
// say so with an error wrapping ErrInvalidInstance whose FieldError names
// the Service field, rather than an empty set that reads as "no instance
// yet" (see discovery.Resolver).
func testResolveAndWatchRejectInvalidServiceNames(t *testing.T, e *env) {
	b := e.backend()
	cases := []struct{ name, service string }{
		{"empty", ""},
		{"slash", "pay/ments"},
		{"space", "pay ments"},
		{"dot-dot", ".."},
		{"wildcard", "pay*"},
		{"too long", strings.Repeat("s", discovery.MaxNameLen+1)},
	}
	check := func(t *testing.T, op string, err error) {
		t.Helper()
		var fe *discovery.FieldError
		switch {
		case !errors.Is(err, discovery.ErrInvalidInstance):
			t.Errorf("%s = %v; want an error wrapping ErrInvalidInstance", op, err)
		case !errors.As(err, &fe) || fe.Field != "Service":
			t.Errorf("%s = %v; want a FieldError naming Service", op, err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Resolve(e.ctx(), tc.service)
			check(t, fmt.Sprintf("Resolve(%.20q)", tc.service), err)
			if err != nil && got != nil {
				t.Errorf("Resolve(%.20q) returned a set %s with its error", tc.service, fmtSet(got))
			}
			w, err := b.Watch(e.ctx(), tc.service)
			if w != nil {
				w.Stop()
			}
			check(t, fmt.Sprintf("Watch(%.20q)", tc.service), err)
		})
	}
}

func testWatchFirstNextIsCurrentSet(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	e.register(a, p1, p2)
	e.waitResolve(b, payments, set(p1, p2))
	for _, r := range []discovery.Backend{a, b} {
		if got := e.next(e.watch(r, payments)); !discovery.EqualSets(got, set(p1, p2)) {
			t.Errorf("first Watcher.Next = %s; want %s", fmtSet(got), fmtSet(set(p1, p2)))
		}
		// An empty service gives an empty set at once; Next does not wait
		// for a first instance.
		if got := e.next(e.watch(r, "nothing-here")); len(got) != 0 {
			t.Errorf("first Watcher.Next of a service never registered = %s; want an empty set", fmtSet(got))
		}
	}
}

func testWatchNextAfterChange(t *testing.T, e *env) {
	a := e.backend()
	w := e.watch(a, payments)
	if got := e.next(w); len(got) != 0 {
		t.Fatalf("first Watcher.Next = %s; want an empty set", fmtSet(got))
	}
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p1b := inst(payments, "p-1", "10.0.0.1:80", "zone", "b")
	steps := []struct {
		name   string
		change func()
		want   []discovery.Instance
	}{
		{"register", func() { e.register(a, p1) }, set(p1)},
		{"update", func() { e.register(a, p1b) }, set(p1b)},
		{"deregister", func() { e.deregister(a, p1b) }, set()},
	}
	for _, step := range steps {
		step.change()
		// One change, one Next.
		if got := e.next(w); !discovery.EqualSets(got, step.want) {
			t.Fatalf("Watcher.Next after %s = %s; want %s", step.name, fmtSet(got), fmtSet(step.want))
		}
	}
	e.quiet(w)
}

func testWatchCoalescesQuickChanges(t *testing.T, e *env) {
	a := e.backend()
	w := e.watch(a, payments)
	if got := e.next(w); len(got) != 0 {
		t.Fatalf("first Watcher.Next = %s; want an empty set", fmtSet(got))
	}
	const n = 30
	in := func(i int, round string) discovery.Instance {
		return inst(payments, fmt.Sprintf("c-%02d", i), fmt.Sprintf("10.0.0.%d:80", i+1), "round", round)
	}
	for i := range n {
		e.register(a, in(i, "1"))
	}
	for i := range 10 {
		e.deregister(a, in(i, "1"))
	}
	for i := 10; i < 15; i++ {
		e.register(a, in(i, "2"))
	}
	var want []discovery.Instance
	for i := 10; i < n; i++ {
		want = append(want, in(i, map[bool]string{true: "2", false: "1"}[i < 15]))
	}
	// A second watcher follows the changes until it sees the final set...
	e.nextUntil(e.watch(a, payments), want)
	// ...and the first one, idle meanwhile, gets it in one call, not a
	// backlog.
	if got := e.next(w); !discovery.EqualSets(got, want) {
		t.Fatalf("Watcher.Next after %d changes = %s; want the final set %s", n+15, fmtSet(got), fmtSet(want))
	}
	e.quiet(w)
}

func testWatchReturnsCopies(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	e.register(a, p1)
	e.waitResolve(b, payments, set(p1))
	w1, w2 := e.watch(b, payments), e.watch(b, payments)
	got := e.next(w1)
	if !discovery.EqualSets(got, set(p1)) {
		t.Fatalf("first Watcher.Next = %s; want %s", fmtSet(got), fmtSet(set(p1)))
	}
	got[0].Metadata["zone"] = "changed"
	got[0].Address = "10.9.9.9:99"
	if got := e.next(w2); !discovery.EqualSets(got, set(p1)) {
		t.Errorf("another watcher's first Next after the first one's result was modified = %s; want %s", fmtSet(got), fmtSet(set(p1)))
	}
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	e.register(a, p2)
	e.nextUntil(w1, set(p1, p2))
	e.waitResolve(b, payments, set(p1, p2))
}

func testWatchersAreIndependent(t *testing.T, e *env) {
	a := e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	e.register(a, p1)
	w1, w2 := e.watch(a, payments), e.watch(a, payments)
	for i, w := range []discovery.Watcher{w1, w2} {
		if got := e.next(w); !discovery.EqualSets(got, set(p1)) {
			t.Fatalf("watcher %d: first Next = %s; want %s", i+1, fmtSet(got), fmtSet(set(p1)))
		}
	}
	w1.Stop()
	e.register(a, p2)
	e.nextUntil(w2, set(p1, p2))
	w2.Stop()
	// A watcher started after all the others stopped works from scratch.
	w3 := e.watch(a, payments)
	if got := e.next(w3); !discovery.EqualSets(got, set(p1, p2)) {
		t.Fatalf("first Next of a new watcher = %s; want %s", fmtSet(got), fmtSet(set(p1, p2)))
	}
	e.deregister(a, p1)
	e.nextUntil(w3, set(p2))
}

func testWatchStopUnblocksNext(t *testing.T, e *env) {
	a := e.backend()
	w := e.watch(a, payments)
	e.next(w)
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(e.ctx())
		done <- err
	}()
	w.Stop()
	if err := e.waitErr("Watcher.Next blocked when Stop was called", done); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watcher.Next blocked when Stop was called = %v; want an error wrapping ErrClosed", err)
	}
	if _, err := w.Next(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watcher.Next after Stop = %v; want an error wrapping ErrClosed", err)
	}
	w.Stop() // idempotent

	// Stop before the first Next.
	w2 := e.watch(a, payments)
	w2.Stop()
	if _, err := w2.Next(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("first Watcher.Next after Stop = %v; want an error wrapping ErrClosed", err)
	}
}

func testWatchContextEndUnblocksNext(t *testing.T, e *env) {
	a := e.backend()
	w := e.watch(a, payments)
	e.next(w)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		done <- err
	}()
	cancel()
	if err := e.waitErr("Watcher.Next with a cancelled context", done); !errors.Is(err, context.Canceled) {
		t.Errorf("Watcher.Next when its context was cancelled = %v; want context.Canceled", err)
	}
	e.quiet(w) // checks DeadlineExceeded too

	// The watcher still works.
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	e.register(a, p1)
	if got := e.next(w); !discovery.EqualSets(got, set(p1)) {
		t.Errorf("Watcher.Next after earlier calls' contexts ended = %s; want %s", fmtSet(got), fmtSet(set(p1)))
	}
}

// testWatchEndsWithItsContext: the context given to Watch bounds the
// watch, as with etcd's and gRPC's streams; its end stops the Watcher.
func testWatchEndsWithItsContext(t *testing.T, e *env) {
	a := e.backend()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := a.Watch(ctx, payments)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(w.Stop)
	e.next(w)

	done := make(chan error, 1)
	go func() {
		_, err := w.Next(e.ctx())
		done <- err
	}()
	cancel()
	err = e.waitErr("Watcher.Next blocked when the Watch context was cancelled", done)
	if !errors.Is(err, discovery.ErrClosed) || !errors.Is(err, context.Canceled) {
		t.Errorf("Watcher.Next blocked when the Watch context was cancelled = %v; want an error wrapping ErrClosed and context.Canceled", err)
	}
	// The watch is over: a change is not delivered.
	e.register(a, inst(payments, "p-1", "10.0.0.1:80"))
	if _, err := w.Next(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watcher.Next after the Watch context ended = %v; want an error wrapping ErrClosed", err)
	}
	w.Stop() // still idempotent
}

func testWatchSeesOtherHandle(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	w := e.watch(b, payments)
	e.nextUntil(w, set())
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p1b := inst(payments, "p-1", "10.0.0.1:80", "zone", "b")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	e.register(a, p1)
	e.nextUntil(w, set(p1))
	e.register(a, p2)
	e.nextUntil(w, set(p1, p2))
	e.register(a, p1b)
	e.nextUntil(w, set(p1b, p2))
	e.deregister(a, p2)
	e.nextUntil(w, set(p1b))
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e.nextUntil(w, set())
}

func testCloseDeregistersEverything(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	o1 := inst("orders", "o-1", "10.0.0.3:80")
	mine := inst(payments, "p-3", "10.0.0.4:80")
	e.register(a, p1, p2, o1)
	e.register(b, mine)
	e.waitResolve(b, payments, set(p1, p2, mine))
	e.waitResolve(b, "orders", set(o1))
	w := e.watch(b, payments)
	e.nextUntil(w, set(p1, p2, mine))

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e.nextUntil(w, set(mine))
	e.waitResolve(b, payments, set(mine))
	e.waitResolve(b, "orders", set())
	if e.caps.Status {
		if got := e.reporter(a).Statuses(); len(got) != 0 {
			t.Errorf("Statuses() after Close = %v; want none", got)
		}
	}
}

func testCloseStopsWatchers(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	e.register(a, p1)
	wa := e.watch(a, payments)
	e.nextUntil(wa, set(p1))
	wb := e.watch(b, payments)
	e.nextUntil(wb, set(p1))

	done := make(chan error, 1)
	go func() {
		_, err := wa.Next(e.ctx())
		done <- err
	}()
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// a's watcher ends. (Its pending Next may first return the set
	// without p1, if it saw that change before the watcher was stopped.)
	err := e.waitErr("Watcher.Next blocked when its backend was closed", done)
	for err == nil || errors.Is(err, discovery.ErrUnavailable) {
		_, err = wa.Next(e.ctx())
	}
	if !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watcher.Next after its backend was closed = %v; want an error wrapping ErrClosed", err)
	}
	// b's watcher goes on and sees a's instance leave.
	e.nextUntil(wb, set())
}

func testCallsAfterCloseAreErrClosed(t *testing.T, e *env) {
	a := e.backend()
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	e.register(a, p1)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Register(e.ctx(), inst(payments, "p-2", "10.0.0.2:80")); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Register after Close = %v; want an error wrapping ErrClosed", err)
	}
	if err := a.Register(e.ctx(), p1); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Register of an earlier instance after Close = %v; want an error wrapping ErrClosed", err)
	}
	if err := a.Deregister(e.ctx(), p1); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Deregister after Close = %v; want an error wrapping ErrClosed", err)
	}
	if got, err := a.Resolve(e.ctx(), payments); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Resolve after Close = %s, %v; want an error wrapping ErrClosed", fmtSet(got), err)
	}
	if w, err := a.Watch(e.ctx(), payments); !errors.Is(err, discovery.ErrClosed) {
		if w != nil {
			w.Stop()
		}
		t.Errorf("Watch after Close = %v; want an error wrapping ErrClosed", err)
	}
	if e.caps.Status {
		r := e.reporter(a)
		sub := r.SubscribeStatus()
		defer sub.Stop()
		if st, err := sub.Next(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("StatusSubscription.Next after Close = %v, %v; want an error wrapping ErrClosed", st, err)
		}
		if st, err := r.Status(payments, "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Status after Close = %v, %v; want an error wrapping ErrNotRegistered", st, err)
		}
	}
}

func testCloseIsIdempotent(t *testing.T, e *env) {
	a, b, c := e.backend(), e.backend(), e.backend()
	e.register(a, inst(payments, "p-1", "10.0.0.1:80"))
	for i := range 3 {
		if err := a.Close(); err != nil {
			t.Errorf("Close call %d: %v; want nil", i+1, err)
		}
	}
	e.register(b, inst(payments, "p-2", "10.0.0.2:80"))
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() { errs <- b.Close() }()
	}
	for range cap(errs) {
		if err := e.waitErr("concurrent Close", errs); err != nil {
			t.Errorf("concurrent Close: %v; want nil", err)
		}
	}
	e.waitResolve(c, payments, set())
}

func testConcurrentRegisterDeregister(t *testing.T, e *env) {
	a, b, c := e.backend(), e.backend(), e.backend()
	w := e.watch(c, payments)
	const n = 50
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		want  []discovery.Instance
		wantA []discovery.Key
	)
	for i := range n {
		r := []discovery.Backend{a, b}[i%2]
		id := fmt.Sprintf("c-%02d", i)
		addr := fmt.Sprintf("10.0.%d.%d:8080", i/200, i%200+1)
		first := inst(payments, id, addr, "round", "1")
		second := inst(payments, id, addr, "round", "2")
		keep := i%3 != 0
		if keep {
			want = append(want, second)
			if i%2 == 0 {
				wantA = append(wantA, second.Key())
			}
		}
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			if err := r.Register(ctx, first); err != nil {
				t.Errorf("Register(%s): %v", fmtInstance(first), err)
				return
			}
			if _, err := r.Resolve(ctx, payments); err != nil {
				t.Errorf("Resolve: %v", err)
			}
			if err := r.Register(ctx, second); err != nil {
				t.Errorf("Register(%s): %v", fmtInstance(second), err)
				return
			}
			if !keep {
				if err := r.Deregister(ctx, discovery.Instance{Service: payments, ID: id}); err != nil {
					t.Errorf("Deregister(%s): %v", id, err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	e.waitResolve(c, payments, want)
	e.waitResolve(a, payments, want)
	e.waitResolve(b, payments, want)
	e.nextUntil(w, want)
	if e.caps.Status {
		got := e.reporter(a).Statuses()
		var keys []discovery.Key
		for _, st := range got {
			keys = append(keys, st.Instance.Key())
			if st.State != discovery.StateRegistered {
				t.Errorf("status of %s = %v; want registered", st.Instance.Key(), st)
			}
		}
		if fmt.Sprint(keys) != fmt.Sprint(wantA) {
			t.Errorf("Statuses() lists %v; want %v", keys, wantA)
		}
	}
}

func testStatusTransitions(t *testing.T, e *env) {
	a := e.backend()
	r := e.reporter(a)
	sub := r.SubscribeStatus()
	t.Cleanup(sub.Stop)

	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	e.register(a, p1)
	st, err := r.Status(payments, "p-1")
	if err != nil || st.State != discovery.StateRegistered || !st.Instance.Equal(p1) ||
		st.Attempt != 0 || st.Err != nil || st.Since.IsZero() || !st.WasRegistered {
		t.Errorf("Status once Register returned = %+v, %v; want registered, instance %s, no attempt, no error, Since set, WasRegistered",
			st, err, fmtInstance(p1))
	}
	// A subscriber may miss Registering (it is coalesced with Registered)
	// but never sees anything else.
	states := e.statesUntil(sub, p1.Key(), discovery.StateRegistered)
	if got := fmt.Sprint(states); got != "[registered]" && got != "[registering registered]" {
		t.Errorf("subscriber saw %v during Register; want [registering registered] or [registered]", states)
	}

	e.deregister(a, p1)
	if st, err := r.Status(payments, "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status once Deregister returned = %v, %v; want ErrNotRegistered", st, err)
	}
	if states := e.statesUntil(sub, p1.Key(), discovery.StateDeregistered); fmt.Sprint(states) != "[deregistered]" {
		t.Errorf("subscriber saw %v during Deregister; want [deregistered]", states)
	}

	// Close deregisters what is left, then ends the subscription.
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	e.register(a, p2)
	e.statesUntil(sub, p2.Key(), discovery.StateRegistered)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if states := e.statesUntil(sub, p2.Key(), discovery.StateDeregistered); fmt.Sprint(states) != "[deregistered]" {
		t.Errorf("subscriber saw %v during Close; want [deregistered]", states)
	}
	if st, err := sub.Next(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("StatusSubscription.Next after Close = %v, %v; want an error wrapping ErrClosed", st, err)
	}
}

func testStatusOfUnknownIsErrNotRegistered(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	ra, rb := e.reporter(a), e.reporter(b)
	if st, err := ra.Status(payments, "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status of an instance never registered = %v, %v; want ErrNotRegistered", st, err)
	}
	p1 := inst(payments, "p-1", "10.0.0.1:80")
	e.register(a, p1)
	e.waitResolve(b, payments, set(p1))
	if st, err := rb.Status(payments, "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status of another handle's instance = %v, %v; want ErrNotRegistered", st, err)
	}
	if got := rb.Statuses(); len(got) != 0 {
		t.Errorf("Statuses() of a handle holding nothing = %v; want none", got)
	}
	e.deregister(a, p1)
	if st, err := ra.Status(payments, "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status after Deregister = %v, %v; want ErrNotRegistered", st, err)
	}
	if got := ra.Statuses(); len(got) != 0 {
		t.Errorf("Statuses() after Deregister = %v; want none", got)
	}
}

func testStatusesListsRegistrations(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	o1 := inst("orders", "o-1", "10.0.0.1:80")
	p1 := inst(payments, "p-1", "10.0.0.2:80", "zone", "a")
	p2 := inst(payments, "p-2", "10.0.0.3:80")
	e.register(a, p2, o1, p1)
	e.register(b, inst(payments, "p-9", "10.0.0.9:80"))
	want := set(o1, p1, p2) // by Service, then ID
	got := e.reporter(a).Statuses()
	if len(got) != len(want) {
		t.Fatalf("Statuses() = %v; want %d statuses, for %s", got, len(want), fmtSet(want))
	}
	for i, st := range got {
		if !st.Instance.Equal(want[i]) || st.State != discovery.StateRegistered {
			t.Errorf("Statuses()[%d] = %v (instance %s); want %s registered", i, st, fmtInstance(st.Instance), fmtInstance(want[i]))
		}
	}
	// Statuses returns copies.
	got[1].Instance.Metadata["zone"] = "changed"
	if again := e.reporter(a).Statuses(); !again[1].Instance.Equal(p1) {
		t.Errorf("Statuses() after modifying the previous result has %s; want %s", fmtInstance(again[1].Instance), fmtInstance(p1))
	}
}

func testSubscribeStatusStartsWithCurrent(t *testing.T, e *env) {
	a := e.backend()
	ins := set(inst("orders", "o-1", "10.0.0.1:80"), inst(payments, "p-1", "10.0.0.2:80"), inst(payments, "p-2", "10.0.0.3:80"))
	e.register(a, ins...)
	sub := e.reporter(a).SubscribeStatus()
	t.Cleanup(sub.Stop)
	seen := make(map[discovery.Key]discovery.Status)
	for range ins {
		st, err := sub.Next(e.ctx())
		if err != nil {
			t.Fatalf("StatusSubscription.Next: %v (seen so far: %v)", err, seen)
		}
		if _, dup := seen[st.Instance.Key()]; dup {
			t.Errorf("subscription yielded %s twice; want each registration once", st.Instance.Key())
		}
		seen[st.Instance.Key()] = st
	}
	for _, in := range ins {
		if st, ok := seen[in.Key()]; !ok || st.State != discovery.StateRegistered || !st.Instance.Equal(in) {
			t.Errorf("first statuses of a new subscription: %s is %v (seen: %v); want registered", in.Key(), st, ok)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), QuietPeriod)
	defer cancel()
	if st, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("StatusSubscription.Next with nothing changing = %v, %v; want context.DeadlineExceeded", st, err)
	}
	sub.Stop()
	if st, err := sub.Next(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("StatusSubscription.Next after Stop = %v, %v; want an error wrapping ErrClosed", st, err)
	}
}

func testConflictLaterWriterWins(t *testing.T, e *env) {
	a, b, c := e.backend(), e.backend(), e.backend()
	pa := inst(payments, "p-1", "10.0.0.1:80", "writer", "a")
	pb := inst(payments, "p-1", "10.0.0.2:80", "writer", "b")
	e.register(a, pa)
	e.waitResolve(c, payments, set(pa))

	e.register(b, pb)
	e.waitResolve(c, payments, set(pb))
	if e.caps.Status {
		st := e.waitState(e.reporter(a), pa.Key(), discovery.StateConflict)
		if !errors.Is(st.Err, discovery.ErrConflict) || !st.Instance.Equal(pa) {
			t.Errorf("earlier writer's status = %v (instance %s); want conflict, Err wrapping ErrConflict, its own instance %s",
				st, fmtInstance(st.Instance), fmtInstance(pa))
		}
		if st, err := e.reporter(b).Status(payments, "p-1"); err != nil || st.State != discovery.StateRegistered {
			t.Errorf("later writer's status = %v, %v; want registered", st, err)
		}
	}
	// The earlier writer waits, and does not take the key back while the
	// later one holds it.
	e.waitResolve(a, payments, set(pb))
	w := e.watch(c, payments)
	e.nextUntil(w, set(pb))
	e.quiet(w)

	// Once the later writer lets go, the earlier one takes the key back.
	e.deregister(b, pb)
	e.nextUntil(w, set(pa))
	e.waitResolve(c, payments, set(pa))
	if e.caps.Status {
		e.waitState(e.reporter(a), pa.Key(), discovery.StateRegistered)
	}
	e.deregister(a, pa)
	e.waitResolve(c, payments, set())
}

func testConflictEarlierWriterDeregisters(t *testing.T, e *env) {
	a, b, c := e.backend(), e.backend(), e.backend()
	pa := inst(payments, "p-1", "10.0.0.1:80", "writer", "a")
	pb := inst(payments, "p-1", "10.0.0.2:80", "writer", "b")
	e.register(a, pa)
	e.register(b, pb)
	e.waitResolve(c, payments, set(pb))
	if e.caps.Status {
		e.waitState(e.reporter(a), pa.Key(), discovery.StateConflict)
	}
	// a still holds the registration, waiting: it may deregister it, and
	// that leaves b's instance alone.
	e.deregister(a, pa)
	if e.caps.Status {
		if st, err := e.reporter(a).Status(payments, "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Status after Deregister = %v, %v; want ErrNotRegistered", st, err)
		}
	}
	w := e.watch(c, payments)
	e.nextUntil(w, set(pb))
	e.quiet(w)
	// a no longer wants the key back once b lets go.
	e.deregister(b, pb)
	e.nextUntil(w, set())
	e.quiet(w)
	e.waitResolve(c, payments, set())
}
