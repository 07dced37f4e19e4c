package discoverytest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

const (
	// Timeout bounds every wait of the suite: for a write to become visible
	// to another handle, for a watcher to report a change, for a status to
	// change, and every single call on a backend.
	Timeout = 10 * time.Second

	// QuietPeriod is how long the suite watches for a change that must not
	// happen, such as a second Next after a watcher has caught up.
	QuietPeriod = 100 * time.Millisecond
)

// Harness is a registry that the suite can open backends on. Each subtest
// gets a Harness of its own from the HarnessMaker.
type Harness interface {
	// MakeBackend returns a new handle on the harness's registry, as a
	// second process would open one: instances registered through one
	// handle are resolved and watched through the others. The suite
	// closes every backend it makes, before it closes the harness.
	MakeBackend(ctx context.Context) (discovery.Backend, error)

	// Close releases the registry. The suite calls it once, when the
	// subtest ends.
	Close()
}

// HarnessMaker returns a fresh Harness, isolated from every other one: the
// suite calls it once per subtest, from parallel subtests. t is the
// subtest's; the maker may use it for logs and cleanup.
type HarnessMaker func(ctx context.Context, t *testing.T) (Harness, error)

// Capabilities declares the optional parts of the contract a backend
// implements. The suite skips the subtests of a capability that is false
// and fails those of a capability that is claimed but missing.
type Capabilities struct {
	// Status: the backends implement discovery.StatusReporter. Status
	// reports discovery.StateRegistered (with WasRegistered set, as
	// backendkit.StatusBoard does) once Register returns and
	// discovery.ErrNotRegistered once Deregister returns, and a
	// subscription sees the transitions Registering, Registered and
	// Deregistered (see discovery.StatusSubscription for which ones a slow
	// subscriber may skip).
	Status bool

	// Conflict: when two handles register the same service and ID, the
	// later writer owns it and every handle resolves the later writer's
	// instance; the earlier one keeps it and takes it back once the later
	// one deregisters it. With Status too, the earlier one reports
	// discovery.StateConflict with an Err wrapping discovery.ErrConflict
	// meanwhile.
	Conflict bool

	// Values: the registry stores each instance as an encoded value (as
	// etcd and NATS do, unlike the memory backend), and the Harness
	// implements ValueWriter, so that the suite can check how the
	// backend reads values written by an older roster or another tool.
	Values bool

	// Faults, when not nil, makes the FaultHarness on which the fault
	// scenarios run (the Fault... subtests: a registry restarted, down
	// longer than the TTL, cut off, an instance deleted by someone else).
	// A backend whose test supplies none, such as the memory backend, has
	// them skipped.
	Faults FaultHarnessMaker
}

// Run runs the conformance suite: one named subtest per rule of the
// contract (see the package documentation for the list), each with a fresh
// Harness from newHarness, in parallel. caps says which optional
// subtests apply.
func Run(t *testing.T, newHarness HarnessMaker, caps Capabilities) {
	t.Helper()
	for _, st := range allSubtests() {
		t.Run(st.name, func(t *testing.T) {
			switch {
			case st.needs.Status && !caps.Status:
				t.Skip("skipped: Capabilities.Status is false")
			case st.needs.Conflict && !caps.Conflict:
				t.Skip("skipped: Capabilities.Conflict is false")
			case st.needs.Values && !caps.Values:
				t.Skip("skipped: Capabilities.Values is false")
			case st.faults && caps.Faults == nil:
				t.Skip("skipped: Capabilities.Faults is nil (the backend's test supplies no FaultHarness to stop, start and cut off its registry)")
			}
			t.Parallel()
			if st.faults {
				st.runFaults(t, caps)
				return
			}
			st.run(t, newEnv(t, newHarness, caps))
		})
	}
}

// env is one subtest's harness, with helpers that fail the subtest.
type env struct {
	t    *testing.T
	h    Harness
	caps Capabilities
}

func newEnv(t *testing.T, newHarness HarnessMaker, caps Capabilities) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Timeout)
	defer cancel()
	h, err := newHarness(ctx, t)
	if err != nil {
		t.Fatalf("making the harness: %v", err)
	}
	if h == nil {
		t.Fatal("the HarnessMaker returned a nil Harness and no error")
	}
	t.Cleanup(h.Close)
	return &env{t: t, h: h, caps: caps}
}

// ctx returns a context bounded by Timeout.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// backend makes a backend that is closed when the subtest ends.
func (e *env) backend() discovery.Backend {
	e.t.Helper()
	b := e.open("MakeBackend", "", e.h.MakeBackend)
	if e.caps.Status {
		if _, ok := b.(discovery.StatusReporter); !ok {
			e.t.Fatalf("Capabilities.Status is true, but %T does not implement discovery.StatusReporter", b)
		}
	}
	return b
}

// open makes a backend with mk (named maker in messages, and what in
// the message of its Close), closed when the subtest ends.
func (e *env) open(maker, what string, mk func(context.Context) (discovery.Backend, error)) discovery.Backend {
	e.t.Helper()
	b, err := mk(e.ctx())
	if err != nil {
		e.t.Fatalf("%s: %v", maker, err)
	}
	if b == nil {
		e.t.Fatalf("%s returned a nil Backend and no error", maker)
	}
	e.t.Cleanup(func() {
		if err := b.Close(); err != nil {
			e.t.Errorf("Close%s at the end of the subtest: %v", what, err)
		}
	})
	return b
}

// reporter returns b's StatusReporter; backend has checked that it has one.
func (e *env) reporter(b discovery.Backend) discovery.StatusReporter {
	return b.(discovery.StatusReporter)
}

func (e *env) register(b discovery.Backend, ins ...discovery.Instance) {
	e.t.Helper()
	for _, in := range ins {
		if err := b.Register(e.ctx(), in); err != nil {
			e.t.Fatalf("Register(%s): %v", fmtInstance(in), err)
		}
	}
}

func (e *env) deregister(b discovery.Backend, ins ...discovery.Instance) {
	e.t.Helper()
	for _, in := range ins {
		if err := b.Deregister(e.ctx(), in); err != nil {
			e.t.Fatalf("Deregister(%s): %v", fmtInstance(in), err)
		}
	}
}

func (e *env) resolve(b discovery.Backend, service string) []discovery.Instance {
	e.t.Helper()
	got, err := b.Resolve(e.ctx(), service)
	if err != nil {
		e.t.Fatalf("Resolve(%q): %v", service, err)
	}
	return got
}

// watch starts a watcher that is stopped when the subtest ends.
func (e *env) watch(b discovery.Backend, service string) discovery.Watcher {
	e.t.Helper()
	return e.watchWith(e.ctx(), b, service)
}

// watchWith starts a watcher with ctx, stopped when the subtest ends.
func (e *env) watchWith(ctx context.Context, b discovery.Backend, service string) discovery.Watcher {
	e.t.Helper()
	w, err := b.Watch(ctx, service)
	if err != nil {
		e.t.Fatalf("Watch(%q): %v", service, err)
	}
	if w == nil {
		e.t.Fatalf("Watch(%q) returned a nil Watcher and no error", service)
	}
	e.t.Cleanup(w.Stop)
	return w
}

// next returns the next set of w and fails on an error. An error wrapping
// discovery.ErrUnavailable is transient and skipped: the watcher returns
// the set again once the registry is back.
func (e *env) next(w discovery.Watcher) []discovery.Instance {
	e.t.Helper()
	ctx := e.ctx()
	for {
		got, err := w.Next(ctx)
		if errors.Is(err, discovery.ErrUnavailable) {
			e.t.Logf("Watcher.Next: %v (skipped: the registry is unreachable for a while)", err)
			continue
		}
		if err != nil {
			e.t.Fatalf("Watcher.Next: %v", err)
		}
		return got
	}
}

// nextUntil calls w.Next until it returns want, skipping errors wrapping
// discovery.ErrUnavailable.
func (e *env) nextUntil(w discovery.Watcher, want []discovery.Instance) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var seen []string
	for {
		got, err := w.Next(ctx)
		if errors.Is(err, discovery.ErrUnavailable) {
			seen = append(seen, "(unavailable)")
			continue
		}
		if err != nil {
			e.t.Fatalf("Watcher.Next: %v\nsets returned so far: %s\nwant: %s", err, strings.Join(seen, ", "), fmtSet(want))
		}
		if discovery.EqualSets(got, want) {
			return
		}
		seen = append(seen, fmtSet(got))
	}
}

// quiet checks that w reports no change for QuietPeriod.
func (e *env) quiet(w discovery.Watcher) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), QuietPeriod)
	defer cancel()
	got, err := w.Next(ctx)
	switch {
	case err == nil:
		e.t.Fatalf("Watcher.Next returned %s, but nothing had changed since its last call", fmtSet(got))
	case !errors.Is(err, context.DeadlineExceeded):
		e.t.Fatalf("Watcher.Next with a context ending after %v: %v; want context.DeadlineExceeded", QuietPeriod, err)
	}
}

// waitResolve polls b.Resolve(service) until it returns exactly want.
func (e *env) waitResolve(b discovery.Backend, service string, want []discovery.Instance) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("Resolve(%q) = %s", service, fmtSet(want)), func(ctx context.Context) (bool, string) {
		got, err := b.Resolve(ctx, service)
		if err != nil {
			return false, "error: " + err.Error()
		}
		return discovery.EqualSets(got, want), fmtSet(got)
	})
}

// waitState polls r.Status(key) until its state is want, and returns it.
func (e *env) waitState(r discovery.StatusReporter, key discovery.Key, want discovery.State) discovery.Status {
	e.t.Helper()
	var st discovery.Status
	e.eventually(fmt.Sprintf("Status(%q, %q) is %v", key.Service, key.ID, want), func(context.Context) (bool, string) {
		var err error
		st, err = r.Status(key.Service, key.ID)
		if err != nil {
			return false, "error: " + err.Error()
		}
		return st.State == want, st.String()
	})
	return st
}

// statesUntil reads sub until it yields a status of key in state final,
// and returns the states of key it yielded, final included. Statuses of
// other registrations are skipped.
func (e *env) statesUntil(sub discovery.StatusSubscription, key discovery.Key, final discovery.State) []discovery.State {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var states []discovery.State
	for {
		st, err := sub.Next(ctx)
		if err != nil {
			e.t.Fatalf("StatusSubscription.Next, waiting for %s to be %v: %v (states so far: %v)", key, final, err, states)
		}
		if st.Instance.Key() != key {
			continue
		}
		states = append(states, st.State)
		if st.State == final {
			return states
		}
	}
}

// eventually polls cond until it holds or Timeout passes. cond returns
// whether it holds and what it saw, for the failure message; ctx bounds
// one call.
func (e *env) eventually(what string, cond func(ctx context.Context) (bool, string)) {
	e.t.Helper()
	e.eventuallyWithin(Timeout, what, cond)
}

// eventuallyWithin is eventually with a deadline of d instead of Timeout.
func (e *env) eventuallyWithin(d time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	delay := time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		ok, last := cond(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waited %v for %s; last saw %s", d, what, last)
		}
		time.Sleep(delay)
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// waitErr waits for the error of a call running in another goroutine.
func (e *env) waitErr(what string, ch <-chan error) error {
	e.t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(Timeout):
		e.t.Fatalf("%s did not return within %v", what, Timeout)
		return nil
	}
}

// inst builds an instance; md holds metadata keys and values in turn.
func inst(service, id, addr string, md ...string) discovery.Instance {
	in := discovery.Instance{Service: service, ID: id, Address: addr}
	if len(md) > 0 {
		in.Metadata = make(map[string]string, len(md)/2)
		for i := 0; i+1 < len(md); i += 2 {
			in.Metadata[md[i]] = md[i+1]
		}
	}
	return in
}

// set builds an instance set, for readability.
func set(ins ...discovery.Instance) []discovery.Instance {
	if ins == nil {
		return []discovery.Instance{}
	}
	return ins
}

func fmtInstance(in discovery.Instance) string {
	s := fmt.Sprintf("%s/%s@%s", in.Service, in.ID, in.Address)
	if len(in.Metadata) > 0 {
		md := fmt.Sprint(in.Metadata) // fmt sorts map keys
		if len(md) > 200 {
			md = md[:200] + "...]"
		}
		s += md
	}
	return s
}

func fmtSet(set []discovery.Instance) string {
	parts := make([]string, len(set))
	for i, in := range set {
		parts[i] = fmtInstance(in)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
