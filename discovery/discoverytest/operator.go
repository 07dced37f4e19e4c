package discoverytest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/invalidtest"
)

// RunOperatorView runs the conformance subtests of discovery.OperatorView
// on backends from newHarness, which must implement it: listings, the
// serving fields read as Resolve reads them, Delete, FindServices and
// FollowRegistry (a Reset, then the whole set of each service that
// changed), and the errors for invalid names and after Close. It is apart
// from Run because the view is optional: a backend that implements it
// runs both.
func RunOperatorView(t *testing.T, newHarness HarnessMaker) {
	t.Helper()
	t.Run("OperatorView", func(t *testing.T) {
		t.Parallel()
		testOperatorView(t, newEnv(t, newHarness, Capabilities{}))
	})
}

// view returns b's OperatorView, failing the test if it has none.
func (e *env) view(b discovery.Backend) discovery.OperatorView {
	e.t.Helper()
	v, ok := b.(discovery.OperatorView)
	if !ok {
		e.t.Fatalf("%T does not implement discovery.OperatorView", b)
	}
	return v
}

// follower collects the updates of one FollowRegistry, as the sets of the
// services it knows.
type follower struct {
	updates chan discovery.RegistryUpdate
	done    chan error
	// last is the last update until applied.
	last discovery.RegistryUpdate
}

func (e *env) follow(v discovery.OperatorView) (*follower, context.CancelFunc) {
	ctx, cancel := context.WithCancel(e.t.Context())
	f := &follower{updates: make(chan discovery.RegistryUpdate, 64), done: make(chan error, 1)}
	go func() {
		f.done <- v.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
			// apply must not keep the slices: copy them.
			c := discovery.RegistryUpdate{Reset: u.Reset, Unreachable: u.Unreachable}
			for _, s := range u.Services {
				c.Services = append(c.Services, discovery.ServiceSet{Service: s.Service, Instances: slices.Clone(s.Instances)})
			}
			select {
			case f.updates <- c:
			case <-ctx.Done():
			}
		})
	}()
	return f, cancel
}

// until reads updates into sets until cond holds for them.
func (e *env) until(f *follower, sets map[string][]discovery.Instance, what string, cond func() bool) {
	e.t.Helper()
	e.untilWithin(Timeout, f, sets, what, cond)
}

// untilWithin is until with a deadline of d instead of Timeout.
func (e *env) untilWithin(d time.Duration, f *follower, sets map[string][]discovery.Instance, what string, cond func() bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), d)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			e.t.Fatalf("FollowRegistry: no update made %s within %v; sets %v, last update %+v", what, d, sets, f.last)
		case err := <-f.done:
			e.t.Fatalf("FollowRegistry returned %v while waiting for %s", err, what)
		case u := <-f.updates:
			f.last = u
			if u.Reset {
				clear(sets)
			}
			for _, s := range u.Services {
				var set []discovery.Instance
				for _, in := range s.Instances {
					set = append(set, in.Instance)
				}
				if len(set) == 0 {
					delete(sets, s.Service)
				} else {
					sets[s.Service] = set
				}
			}
		}
	}
}

func testOperatorView(t *testing.T, e *env) {
	a, b := e.backend(), e.backend()
	v := e.view(b)
	p1 := inst(payments, "p-1", "10.0.0.1:80", "zone", "a")
	p2 := inst(payments, "p-2", "10.0.0.2:80")
	p2.Condition, p2.Reason, p2.Weight, p2.Zone = discovery.ConditionDraining, "shutting down", 30, "eu-west-1a"
	o1 := inst("orders", "o-1", "10.0.0.3:80")
	e.register(a, p1, p2, o1)
	e.waitResolve(b, payments, set(p1, p2))
	e.waitResolve(b, "orders", set(o1))

	// Listings.
	services, skipped, err := v.Services(e.ctx())
	want := []discovery.ServiceSummary{{Service: "orders", Instances: 1}, {Service: payments, Instances: 2}}
	if err != nil || !slices.Equal(services, want) || len(skipped) != 0 {
		t.Errorf("Services = %v, skipped %v, %v; want %v", services, skipped, err, want)
	}
	infos, skipped, err := v.Instances(e.ctx(), payments)
	var got []discovery.Instance
	for _, in := range infos {
		got = append(got, in.Instance)
		if in.HasTTL && in.TTL > Timeout*100 {
			t.Errorf("Instances: %s has %v left, more than any TTL a test uses", in.Key(), in.TTL)
		}
		if in.HasTTL && in.Lease == "" {
			t.Errorf("Instances: %s has a TTL but no lease to read it again", in.Key())
		}
	}
	if err != nil || !slices.EqualFunc(got, set(p1, p2), discovery.Instance.Equal) || len(skipped) != 0 {
		t.Errorf("Instances(%s) = %s, skipped %v, %v; want %s (condition, reason, weight and zone as registered)",
			payments, fmtSet(got), skipped, err, fmtSet(set(p1, p2)))
	}
	for _, in := range infos {
		if in.Lease == "" {
			continue
		}
		if l, err := v.ReadLease(e.ctx(), in.Lease); err != nil || !l.Found || l.Left <= 0 {
			t.Errorf("ReadLease(%q) of live %s = %+v, %v; want found with time left", in.Lease, in.Key(), l, err)
		}
	}
	if infos, _, err := v.Instances(e.ctx(), "nothing-here"); err != nil || len(infos) != 0 {
		t.Errorf("Instances of a service without instances = %v, %v; want none, no error", infos, err)
	}
	if v.Where() == "" || v.EntryOf(p1.Key()) == "" {
		t.Errorf("Where() = %q, EntryOf(%s) = %q; want what an operator's message names", v.Where(), p1.Key(), v.EntryOf(p1.Key()))
	}

	// Invalid names: refused, nothing deleted.
	invalidtest.CheckRefused(e.ctx(), t, v)
	if got := e.resolve(b, payments); !discovery.EqualSets(got, set(p1, p2)) {
		t.Errorf("Resolve after the refused calls = %s; want %s", fmtSet(got), fmtSet(set(p1, p2)))
	}
	if err := v.Delete(e.ctx(), payments, "p-9"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Delete of an instance nobody registered: %v; want ErrNotRegistered", err)
	}

	// FindServices: every service at once.
	fctx, fcancel := context.WithCancel(e.t.Context())
	found := make(chan []string, 16)
	fdone := make(chan error, 1)
	go func() {
		fdone <- v.FindServices(fctx, func(s []string) {
			select {
			case found <- slices.Clone(s):
			case <-fctx.Done():
			}
		})
	}()
	select {
	case s := <-found:
		if !slices.Equal(s, []string{"orders", payments}) {
			t.Errorf("FindServices first reported %v; want [orders %s]", s, payments)
		}
	case err := <-fdone:
		t.Fatalf("FindServices returned %v before reporting", err)
	case <-e.ctx().Done():
		t.Fatal("FindServices reported nothing")
	}
	fcancel()
	if err := e.waitErr("FindServices to return once its ctx ended", fdone); !errors.Is(err, context.Canceled) {
		t.Errorf("FindServices after its ctx ended: %v; want context.Canceled", err)
	}

	// FollowRegistry: a Reset with every set, then each changed set whole.
	f, cancel := e.follow(v)
	sets := make(map[string][]discovery.Instance)
	has := func(service string, want []discovery.Instance) func() bool {
		return func() bool { return slices.EqualFunc(sets[service], want, discovery.Instance.Equal) }
	}
	e.until(f, sets, "the first sets", func() bool { return has(payments, set(p1, p2))() && has("orders", set(o1))() })
	p3 := inst(payments, "p-3", "10.0.0.4:80")
	e.register(a, p3)
	e.until(f, sets, "p-3 join payments", has(payments, set(p1, p2, p3)))
	p1.Condition, p1.Reason = discovery.ConditionNotReady, "warming up"
	e.register(a, p1)
	e.until(f, sets, "p-1's condition change", has(payments, set(p1, p2, p3)))
	e.deregister(a, o1)
	e.until(f, sets, "orders leave", func() bool { _, ok := sets["orders"]; return !ok })

	// Delete: the instance goes; its live registrar writes it back.
	if err := v.Delete(e.ctx(), payments, "p-3"); err != nil {
		t.Errorf("Delete of a registered instance: %v", err)
	}
	e.waitResolve(b, payments, set(p1, p2, p3))
	cancel()
	if err := e.waitErr("FollowRegistry to return once its ctx ended", f.done); !errors.Is(err, context.Canceled) {
		t.Errorf("FollowRegistry after its ctx ended: %v; want context.Canceled", err)
	}

	// After Close.
	f, cancel = e.follow(v)
	defer cancel()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.waitErr("FollowRegistry to return once the backend closed", f.done); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("FollowRegistry when the backend closed: %v; want ErrClosed", err)
	}
	if _, _, err := v.Services(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Services after Close: %v; want ErrClosed", err)
	}
	if err := v.Delete(e.ctx(), payments, "p-1"); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Delete after Close: %v; want ErrClosed", err)
	}

	// Closed before any call.
	c := e.backend()
	if err := c.Close(); err != nil {
		t.Fatalf("Close of an unused backend: %v", err)
	}
	cv := e.view(c)
	if _, _, err := cv.Services(e.ctx()); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Services after Close of an unused backend: %v; want ErrClosed", err)
	}
	if _, _, err := cv.Instances(e.ctx(), payments); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Instances after Close of an unused backend: %v; want ErrClosed", err)
	}
	if err := cv.Delete(e.ctx(), payments, "p-1"); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Delete after Close of an unused backend: %v; want ErrClosed", err)
	}
}

// testFaultFollowRegistryReportsOutage: FollowRegistry tells apply that
// the registry does not answer (an update with Unreachable wrapping
// ErrUnavailable, and no set) while it is stopped, and that it answers
// again (an update without it) once it is back, with the instance still
// known, and the changes made after it. The registry is stopped as soon
// as the first sets are reported, before any change. It runs on backends
// that implement discovery.OperatorView.
func testFaultFollowRegistryReportsOutage(t *testing.T, f *faultEnv) {
	a, b := f.backend(), f.backend()
	v, ok := b.(discovery.OperatorView)
	if !ok {
		t.Skipf("skipped: %T does not implement discovery.OperatorView", b)
	}
	p1, p2 := inst(payments, "p-1", "10.0.0.1:80"), inst(payments, "p-2", "10.0.0.2:80")
	f.register(a, p1)
	fl, cancel := f.follow(v)
	defer cancel()
	sets := make(map[string][]discovery.Instance)
	has := func(want []discovery.Instance) func() bool {
		return func() bool { return slices.EqualFunc(sets[payments], want, discovery.Instance.Equal) }
	}
	// Stopped right after the first sets, before any change: the outage
	// is reported whatever FollowRegistry was doing (on etcd, opening its
	// watch).
	f.until(fl, sets, "the first sets", has(set(p1)))
	f.stop()
	f.untilWithin(f.opts.TTL+Timeout, fl, sets, "an update saying the registry does not answer", func() bool { return fl.last.Unreachable != nil })
	if u := fl.last; !errors.Is(u.Unreachable, discovery.ErrUnavailable) || len(u.Services) != 0 || u.Reset {
		t.Errorf("the update once the registry stopped = %+v; want Unreachable wrapping ErrUnavailable, and no set", u)
	}
	f.start()
	f.untilWithin(f.opts.TTL+Timeout, fl, sets, "an update saying the registry answers, with p-1", func() bool {
		return fl.last.Unreachable == nil && has(set(p1))()
	})
	// The changes made once it is back are reported.
	f.register(a, p2)
	f.until(fl, sets, "p-2 join payments", has(set(p1, p2)))
}
