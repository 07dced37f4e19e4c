package memory_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

const timeout = 10 * time.Second

// fastRetry is a jitter-free policy, so RetryIn values are exact.
var fastRetry = retry.Policy{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

func newBackend(t *testing.T, store *memory.Store, opts ...memory.Option) *memory.Backend {
	t.Helper()
	b, err := memory.New(store, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func register(t *testing.T, b *memory.Backend, in discovery.Instance) {
	t.Helper()
	if err := b.Register(ctx(t), in); err != nil {
		t.Fatalf("Register(%v): %v", in, err)
	}
}

func subscribe(t *testing.T, b *memory.Backend) discovery.StatusSubscription {
	sub := b.SubscribeStatus()
	t.Cleanup(sub.Stop)
	return sub
}

// next returns the next status of key from sub, skipping other keys.
func next(t *testing.T, sub discovery.StatusSubscription, key discovery.Key) discovery.Status {
	t.Helper()
	for {
		st, err := sub.Next(ctx(t))
		if err != nil {
			t.Fatalf("StatusSubscription.Next waiting for %s: %v", key, err)
		}
		if st.Instance.Key() == key {
			return st
		}
	}
}

// until reads statuses of key from sub until one is in state want.
func until(t *testing.T, sub discovery.StatusSubscription, key discovery.Key, want discovery.State) (discovery.Status, []discovery.State) {
	t.Helper()
	var states []discovery.State
	for {
		st := next(t, sub, key)
		states = append(states, st.State)
		if st.State == want {
			return st, states
		}
	}
}

func status(t *testing.T, b *memory.Backend, key discovery.Key) discovery.Status {
	t.Helper()
	st, err := b.Status(key.Service, key.ID)
	if err != nil {
		t.Fatalf("Status(%s): %v", key, err)
	}
	return st
}

func resolve(t *testing.T, b *memory.Backend, service string) []discovery.Instance {
	t.Helper()
	got, err := b.Resolve(ctx(t), service)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", service, err)
	}
	return got
}

func wantSet(t *testing.T, b *memory.Backend, service string, want ...discovery.Instance) {
	t.Helper()
	if got := resolve(t, b, service); !discovery.EqualSets(got, want) {
		t.Fatalf("Resolve(%q) = %v; want %v", service, got, want)
	}
}

var (
	p1  = discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80", Metadata: map[string]string{"zone": "a"}}
	p1b = discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.2:80", Metadata: map[string]string{"zone": "b"}}
	p2  = discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.3:80"}
)

func TestExpireLostThenRegistered(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a := newBackend(t, store, memory.WithRestoreDelay(200*time.Millisecond))
	other := newBackend(t, store)
	register(t, a, p1)
	sub := subscribe(t, a)
	until(t, sub, p1.Key(), discovery.StateRegistered)
	w, err := other.Watch(ctx(t), "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if got, err := w.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1}) {
		t.Fatalf("first Next = %v, %v; want [p-1]", got, err)
	}

	if !store.Expire("payments", "p-1") {
		t.Fatal("Expire of a registered instance = false; want true")
	}
	// Synchronously: gone from the store, owner Lost.
	wantSet(t, other, "payments")
	if st := status(t, a, p1.Key()); st.State != discovery.StateLost || !errors.Is(st.Err, memory.ErrExpired) {
		t.Errorf("Status right after Expire = %v; want lost, Err wrapping ErrExpired", st)
	}
	if got, err := w.Next(ctx(t)); err != nil || len(got) != 0 {
		t.Errorf("watcher's Next after Expire = %v, %v; want an empty set", got, err)
	}
	st := next(t, sub, p1.Key())
	if st.State != discovery.StateLost || !errors.Is(st.Err, memory.ErrExpired) || !st.Instance.Equal(p1) {
		t.Errorf("subscriber's status after Expire = %v; want lost, Err wrapping ErrExpired", st)
	}
	// After the restore delay: back.
	st = next(t, sub, p1.Key())
	if st.State != discovery.StateRegistered || st.Err != nil {
		t.Errorf("subscriber's status after the restore delay = %v; want registered", st)
	}
	wantSet(t, other, "payments", p1)
	if got, err := w.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1}) {
		t.Errorf("watcher's Next after the restore = %v, %v; want [p-1]", got, err)
	}

	if store.Expire("payments", "nope") {
		t.Error("Expire of an unknown instance = true; want false")
	}
}

func TestExpireWithoutDelayRestoresBeforeReturning(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a := newBackend(t, store)
	register(t, a, p1)
	before := status(t, a, p1.Key())
	sub := subscribe(t, a)
	until(t, sub, p1.Key(), discovery.StateRegistered)

	if !store.Expire("payments", "p-1") {
		t.Fatal("Expire = false; want true")
	}
	wantSet(t, a, "payments", p1)
	after := status(t, a, p1.Key())
	if after.State != discovery.StateRegistered || !after.Since.After(before.Since) {
		t.Errorf("Status after Expire = %v since %v; want registered again, since after %v", after, after.Since, before.Since)
	}
	// The subscriber sees Lost unless it was coalesced away, then Registered.
	_, states := until(t, sub, p1.Key(), discovery.StateRegistered)
	if got := fmt.Sprint(states); got != "[lost registered]" && got != "[registered]" {
		t.Errorf("subscriber saw %v; want [lost registered] or [registered]", states)
	}
}

func TestExpireHandsKeyToWaitingBackend(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a := newBackend(t, store)
	b := newBackend(t, store, memory.WithRestoreDelay(time.Hour))
	register(t, a, p1)
	register(t, b, p1b) // b owns, a waits
	if st := status(t, a, p1.Key()); st.State != discovery.StateConflict || !errors.Is(st.Err, discovery.ErrConflict) {
		t.Fatalf("earlier writer's status = %v; want conflict", st)
	}
	store.Expire("payments", "p-1")
	// a was waiting for the key and takes it at once.
	wantSet(t, b, "payments", p1)
	if st := status(t, a, p1.Key()); st.State != discovery.StateRegistered {
		t.Errorf("waiting backend's status after Expire = %v; want registered", st)
	}
	if st := status(t, b, p1.Key()); st.State != discovery.StateLost {
		t.Errorf("expired backend's status = %v; want lost", st)
	}
}

func TestExpiredOwnerWaitsWhenKeyTaken(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a := newBackend(t, store)
	b := newBackend(t, store) // restores at once
	register(t, a, p1)
	register(t, b, p1b)
	store.Expire("payments", "p-1")
	// a took the key; b's restore found it taken.
	wantSet(t, a, "payments", p1)
	if st := status(t, b, p1.Key()); st.State != discovery.StateConflict || !st.Instance.Equal(p1b) {
		t.Errorf("expired backend's status = %v; want conflict over its own instance", st)
	}
	// b takes it back when a lets go.
	if err := a.Deregister(ctx(t), p1); err != nil {
		t.Fatal(err)
	}
	wantSet(t, a, "payments", p1b)
	if st := status(t, b, p1.Key()); st.State != discovery.StateRegistered {
		t.Errorf("status after the key was freed = %v; want registered", st)
	}
}

func TestConflictWaitersTakeKeyInOrder(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a, b, c := newBackend(t, store), newBackend(t, store), newBackend(t, store)
	ins := map[*memory.Backend]discovery.Instance{}
	for i, be := range []*memory.Backend{a, b, c} {
		in := p1.Clone()
		in.Metadata["writer"] = fmt.Sprint(i)
		ins[be] = in
		register(t, be, in)
	}
	// c owns; a has waited longest, then b.
	wantSet(t, a, "payments", ins[c])
	if err := c.Deregister(ctx(t), p1); err != nil {
		t.Fatal(err)
	}
	wantSet(t, a, "payments", ins[a])
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	wantSet(t, b, "payments", ins[b])
	if st := status(t, b, p1.Key()); st.State != discovery.StateRegistered {
		t.Errorf("last waiter's status = %v; want registered", st)
	}
}

func TestDeregisterWhileInConflictKeepsOwner(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a, b := newBackend(t, store), newBackend(t, store)
	register(t, a, p1)
	register(t, b, p1b)
	if err := a.Deregister(ctx(t), p1); err != nil {
		t.Fatalf("Deregister of an instance held in conflict: %v; want nil", err)
	}
	wantSet(t, a, "payments", p1b)
	if _, err := a.Status("payments", "p-1"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status after Deregister = %v; want ErrNotRegistered", err)
	}
	// a no longer wants the key back.
	if err := b.Deregister(ctx(t), p1b); err != nil {
		t.Fatal(err)
	}
	wantSet(t, a, "payments")
}

func TestOutageRetryingThenRegistered(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := memory.NewStore()
		a := newBackend(t, store, memory.WithRetry(fastRetry))
		idle := newBackend(t, store, memory.WithRetry(fastRetry)) // holds nothing
		register(t, a, p1)
		register(t, a, p2)
		sub := subscribe(t, a)
		until(t, sub, p1.Key(), discovery.StateRegistered)
		until(t, sub, p2.Key(), discovery.StateRegistered)
		idleSub := subscribe(t, idle)

		store.SetAvailable(false)
		// Attempt 1 is reported before SetAvailable returns.
		for _, key := range []discovery.Key{p1.Key(), p2.Key()} {
			st := status(t, a, key)
			if st.State != discovery.StateRetrying || st.Attempt != 1 || st.RetryIn != fastRetry.Base || !errors.Is(st.Err, memory.ErrUnavailable) {
				t.Errorf("Status(%s) right after the outage began = %v; want retrying, attempt 1, next in %v, Err wrapping ErrUnavailable",
					key, st, fastRetry.Base)
			}
		}
		// Every call fails meanwhile and changes nothing (Deregister
		// waits: TestDeregisterInAnOutageWaitsForTheStore).
		for name, err := range map[string]error{
			"Register": a.Register(ctx(t), p1b),
			"Resolve":  func() error { _, err := idle.Resolve(ctx(t), "payments"); return err }(),
			"Watch":    func() error { _, err := idle.Watch(ctx(t), "payments"); return err }(),
		} {
			if !errors.Is(err, memory.ErrUnavailable) || !errors.Is(err, discovery.ErrUnavailable) {
				t.Errorf("%s during the outage: %v; want an error wrapping memory.ErrUnavailable and discovery.ErrUnavailable", name, err)
			}
		}
		// Attempts count up; delays follow the policy: 5, 10, 20, 20 ms.
		last := 0
		for last < 4 {
			st := next(t, sub, p1.Key())
			if st.State != discovery.StateRetrying {
				t.Fatalf("status during the outage = %v; want retrying", st)
			}
			if st.Attempt <= last {
				t.Fatalf("attempt %d after attempt %d; want attempts counting up", st.Attempt, last)
			}
			want := min(fastRetry.Base<<(st.Attempt-1), fastRetry.Max)
			if st.RetryIn != want {
				t.Errorf("attempt %d: RetryIn = %v; want %v", st.Attempt, st.RetryIn, want)
			}
			last = st.Attempt
		}

		store.SetAvailable(true)
		for _, key := range []discovery.Key{p1.Key(), p2.Key()} {
			if st, _ := until(t, sub, key, discovery.StateRegistered); st.Err != nil || st.Attempt != 0 {
				t.Errorf("status of %s after the outage = %v; want registered", key, st)
			}
		}
		// Registrations were kept; calls work again.
		wantSet(t, idle, "payments", p1, p2)
		register(t, a, p1b)
		wantSet(t, idle, "payments", p1b, p2)
		// A backend holding nothing reported nothing: the bubble's clock
		// passes the deadline once every goroutine is blocked.
		c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if st, err := idleSub.Next(c); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("idle backend's subscription yielded %v, %v; want nothing", st, err)
		}
	})
}

// Deregister during an outage keeps the discovery.Registrar contract: it
// forgets the registration at once, waits for the Store within its
// context, returns an error wrapping ErrUnavailable and the context's when
// that ends first, and the instance leaves the Store once it is back; a
// patient Deregister returns nil then, the instance gone.
func TestDeregisterInAnOutageWaitsForTheStore(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := memory.NewStore()
		a := newBackend(t, store, memory.WithRetry(fastRetry))
		idle := newBackend(t, store, memory.WithRetry(fastRetry))
		register(t, a, p1)
		register(t, a, p2)
		store.SetAvailable(false)

		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := a.Deregister(c, p1); !errors.Is(err, discovery.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Deregister during the outage, its context ending = %v; want an error wrapping ErrUnavailable and DeadlineExceeded", err)
		}
		if _, err := a.Status(p1.Service, p1.ID); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Status of p-1 after Deregister = %v; want ErrNotRegistered (no longer held)", err)
		}
		patient := make(chan error, 1)
		go func() { patient <- a.Deregister(context.Background(), p2) }()
		synctest.Wait() // it waits for the Store
		select {
		case err := <-patient:
			t.Fatalf("Deregister during the outage returned %v; want it to wait for the Store", err)
		default:
		}
		store.SetAvailable(true)
		if err := <-patient; err != nil {
			t.Errorf("Deregister once the Store is back = %v; want nil", err)
		}
		wantSet(t, idle, "payments")
	})
}

func TestOutageRecoveryDoesNotWaitForBackoff(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a := newBackend(t, store, memory.WithRetry(retry.Policy{Base: time.Hour, Max: time.Hour}))
	register(t, a, p1)
	sub := subscribe(t, a)
	until(t, sub, p1.Key(), discovery.StateRegistered)

	store.SetAvailable(false)
	if st := next(t, sub, p1.Key()); st.State != discovery.StateRetrying || st.Attempt != 1 || st.RetryIn != time.Hour {
		t.Fatalf("status during the outage = %v; want retrying, attempt 1, next in 1h", st)
	}
	start := time.Now()
	store.SetAvailable(true)
	until(t, sub, p1.Key(), discovery.StateRegistered)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("recovery took %v; want it at once", d)
	}
	// A second outage starts a fresh retry sequence.
	store.SetAvailable(false)
	if st := next(t, sub, p1.Key()); st.State != discovery.StateRetrying || st.Attempt != 1 {
		t.Fatalf("status during the second outage = %v; want retrying, attempt 1", st)
	}
	store.SetAvailable(true)
	until(t, sub, p1.Key(), discovery.StateRegistered)
}

func TestOutageWatchersSeeUnavailableOnceThenSetAgain(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := memory.NewStore()
		a := newBackend(t, store, memory.WithRetry(fastRetry))
		other := newBackend(t, store)
		leaving, err := memory.New(store, memory.WithRetry(fastRetry))
		if err != nil {
			t.Fatal(err)
		}
		defer leaving.Close()
		p3 := discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.4:80"}
		register(t, a, p1)
		register(t, a, p2)
		register(t, leaving, p3)
		var ws []discovery.Watcher
		for _, b := range []*memory.Backend{a, other} {
			w, err := b.Watch(ctx(t), "payments")
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			if got, err := w.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1, p2, p3}) {
				t.Fatalf("first Next = %v, %v; want [p-1 p-2 p-3]", got, err)
			}
			ws = append(ws, w)
		}
		// quietNext's deadline passes on the bubble's clock once every
		// goroutine is blocked: whatever was to be delivered is.
		quietNext := func(w discovery.Watcher) ([]discovery.Instance, error) {
			c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			return w.Next(c)
		}

		store.SetAvailable(false)
		for i, w := range ws {
			_, err := w.Next(ctx(t))
			if !errors.Is(err, discovery.ErrUnavailable) || !errors.Is(err, memory.ErrUnavailable) {
				t.Fatalf("watcher %d: Next during the outage = %v; want an error wrapping discovery.ErrUnavailable and memory.ErrUnavailable", i, err)
			}
			// Once per outage: then Next waits.
			if got, err := quietNext(w); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("watcher %d: second Next during the outage = %v, %v; want it to wait", i, got, err)
			}
		}
		// Changes made during the outage are not delivered...
		leaving.Close()
		if got, err := quietNext(ws[1]); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next after a Close during the outage = %v, %v; want it to wait", got, err)
		}
		// ...until the outage ends.
		store.SetAvailable(true)
		for i, w := range ws {
			if got, err := w.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1, p2}) {
				t.Errorf("watcher %d: Next after the outage = %v, %v; want [p-1 p-2]", i, got, err)
			}
		}

		// A second outage, with nothing changing: the same set comes again,
		// once.
		store.SetAvailable(false)
		for i, w := range ws {
			if _, err := w.Next(ctx(t)); !errors.Is(err, discovery.ErrUnavailable) {
				t.Fatalf("watcher %d: Next during the second outage = %v; want ErrUnavailable", i, err)
			}
		}
		store.SetAvailable(true)
		for i, w := range ws {
			if got, err := w.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1, p2}) {
				t.Errorf("watcher %d: Next after the second outage = %v, %v; want the same set [p-1 p-2] again", i, got, err)
			}
			if got, err := quietNext(w); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("watcher %d: Next with nothing changed = %v, %v; want it to wait", i, got, err)
			}
		}
		// The watchers go on.
		register(t, a, p1b)
		for i, w := range ws {
			if got, err := w.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1b, p2}) {
				t.Errorf("watcher %d: Next after a change = %v, %v; want [p-1 p-2] with p-1 updated", i, got, err)
			}
		}
	})
}

func TestExpireDuringOutageRestoresAfterIt(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a := newBackend(t, store, memory.WithRetry(fastRetry))
	other := newBackend(t, store)
	register(t, a, p1)
	store.SetAvailable(false)
	store.Expire("payments", "p-1")
	store.SetAvailable(true)
	sub := subscribe(t, a)
	until(t, sub, p1.Key(), discovery.StateRegistered)
	wantSet(t, other, "payments", p1)
}

func TestCloseDuringOutage(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a, err := memory.New(store, memory.WithRetry(fastRetry))
	if err != nil {
		t.Fatal(err)
	}
	other := newBackend(t, store)
	register(t, a, p1)
	store.SetAvailable(false)
	sub := a.SubscribeStatus()
	if err := a.Close(); err != nil {
		t.Errorf("Close during an outage: %v; want nil", err)
	}
	if _, states := until(t, sub, p1.Key(), discovery.StateDeregistered); len(states) == 0 {
		t.Error("no deregistered status")
	}
	store.SetAvailable(true)
	wantSet(t, other, "payments")
}

func TestNewWithNilStore(t *testing.T) {
	t.Parallel()
	a := newBackend(t, nil)
	if a.Store() == nil {
		t.Fatal("Store() of a backend made with a nil store = nil")
	}
	register(t, a, p1)
	b := newBackend(t, a.Store())
	wantSet(t, b, "payments", p1)
	// Private stores are separate.
	wantSet(t, newBackend(t, nil), "payments")
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		opt        memory.Option
		wantOption string // the option the error names
		wantReason string // and the reason it gives
		wantPolicy bool   // the error wraps retry.ErrInvalidPolicy
	}{
		{"negative restore delay", memory.WithRestoreDelay(-time.Second), "WithRestoreDelay", "-1s", false},
		{"negative retry base", memory.WithRetry(retry.Policy{Base: -1}), "WithRetry", "Base", true},
		{"retry jitter of 1", memory.WithRetry(retry.Policy{Jitter: 1}), "WithRetry", "Jitter", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// goleak (TestMain) checks that nothing was started.
			b, err := memory.New(memory.NewStore(), tc.opt)
			if err == nil {
				b.Close()
				t.Fatalf("New with %s succeeded, want an error", tc.name)
			}
			if b != nil {
				t.Errorf("New with %s returned a Backend with its error", tc.name)
			}
			if !errors.Is(err, memory.ErrInvalidOption) {
				t.Errorf("New with %s = %v, want an error wrapping ErrInvalidOption", tc.name, err)
			}
			if got := errors.Is(err, retry.ErrInvalidPolicy); got != tc.wantPolicy {
				t.Errorf("errors.Is(%v, retry.ErrInvalidPolicy) = %v, want %v", err, got, tc.wantPolicy)
			}
			for _, want := range []string{tc.wantOption, tc.wantReason} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New with %s = %q, want it to mention %q", tc.name, err, want)
				}
			}
		})
	}
}

func TestNewIgnoresNilOption(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil, nil, memory.WithRestoreDelay(0), nil)
	register(t, b, p1)
	wantSet(t, b, "payments", p1)
}

func TestWatchersSurviveOtherBackendsClose(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	a, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, store)
	wa, err := a.Watch(ctx(t), "payments")
	if err != nil {
		t.Fatal(err)
	}
	wb, err := b.Watch(ctx(t), "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Stop()
	// Both share one feed; closing a stops only a's watcher.
	a.Close()
	if _, err := wa.Next(ctx(t)); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next on a closed backend's watcher: %v; want ErrClosed", err)
	}
	if got, err := wb.Next(ctx(t)); err != nil || len(got) != 0 {
		t.Fatalf("first Next = %v, %v; want an empty set", got, err)
	}
	register(t, b, p1)
	if got, err := wb.Next(ctx(t)); err != nil || !discovery.EqualSets(got, []discovery.Instance{p1}) {
		t.Errorf("Next = %v, %v; want [p-1]", got, err)
	}
}

// TestChaos runs every operation, fault injection included, from several
// goroutines at once, to let the race detector and goleak find what the
// other tests miss; then it checks that the store settles.
func TestChaos(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	const workers = 4
	backends := make([]*memory.Backend, workers)
	for i := range backends {
		b, err := memory.New(store, memory.WithRetry(fastRetry), memory.WithRestoreDelay(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		backends[i] = b
	}
	keeper := newBackend(t, store)
	deadline := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	for i, b := range backends {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			sub := b.SubscribeStatus()
			defer sub.Stop()
			for time.Now().Before(deadline) {
				in := discovery.Instance{Service: "chaos", ID: fmt.Sprintf("c-%d", rng.IntN(5)), Address: "10.0.0.1:80",
					Metadata: map[string]string{"by": fmt.Sprint(i)}}
				c, cancel := context.WithTimeout(context.Background(), timeout)
				switch rng.IntN(8) {
				case 0, 1:
					_ = b.Register(c, in)
				case 2:
					_ = b.Deregister(c, in)
				case 3:
					_, _ = b.Resolve(c, "chaos")
				case 4:
					if w, err := b.Watch(c, "chaos"); err == nil {
						_, _ = w.Next(c)
						w.Stop()
					}
				case 5:
					store.Expire("chaos", in.ID)
				case 6:
					store.SetAvailable(rng.IntN(2) == 0)
				case 7:
					_ = b.Statuses()
					c2, cancel2 := context.WithTimeout(c, time.Millisecond)
					_, _ = sub.Next(c2)
					cancel2()
				}
				cancel()
			}
		})
	}
	wg.Wait()
	store.SetAvailable(true)
	for _, b := range backends {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	wantSet(t, keeper, "chaos")
}

func TestBackendFactsFollowOutage(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	b := newBackend(t, store, memory.WithRetry(fastRetry))
	if got, want := b.BackendFacts(), (discovery.BackendFacts{Connected: true}); got != want {
		t.Fatalf("facts before any outage = %+v, want %+v", got, want)
	}
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	register(t, b, in)
	sub := subscribe(t, b)
	until(t, sub, in.Key(), discovery.StateRegistered)

	store.SetAvailable(false)
	// Attempt 1 is reported before SetAvailable returns; wait for two more.
	st, _ := until(t, sub, in.Key(), discovery.StateRetrying)
	for st.Attempt < 3 {
		st = next(t, sub, in.Key())
	}
	got := b.BackendFacts()
	if got.Connected || got.RetryAttempts < 3 || got.HasLease {
		t.Errorf("facts during the outage = %+v; want disconnected, at least 3 attempts, no lease", got)
	}
	store.SetAvailable(true)
	until(t, sub, in.Key(), discovery.StateRegistered)
	after := b.BackendFacts()
	if !after.Connected || after.RetryAttempts < got.RetryAttempts {
		t.Errorf("facts after the outage = %+v; want connected, attempts not fewer than %d", after, got.RetryAttempts)
	}
	// Attempts are per outage attempt, not per registration: one backend
	// holding two registrations counts each attempt once.
	b2 := newBackend(t, store, memory.WithRetry(retry.Policy{Base: time.Hour, Max: time.Hour}))
	register(t, b2, discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"})
	register(t, b2, discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.3:80"})
	store.SetAvailable(false)
	if got := b2.BackendFacts().RetryAttempts; got != 1 {
		t.Errorf("RetryAttempts after one failed attempt with two registrations = %d, want 1", got)
	}
	store.SetAvailable(true)
}

func TestExpiredCauseWrapsErrRemoved(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	b := newBackend(t, store, memory.WithRestoreDelay(time.Hour))
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	register(t, b, in)
	store.Expire("payments", "p-1")
	st := status(t, b, in.Key())
	if st.State != discovery.StateLost || !errors.Is(st.Err, memory.ErrExpired) || !errors.Is(st.Err, discovery.ErrRemoved) {
		t.Errorf("status = %v; want lost with a cause wrapping ErrExpired and discovery.ErrRemoved", st)
	}
}

// TestRevisions: Resolve and the watchers give each set with the Store's
// revision, which grows with every change and is the same for the same
// state, so that a client can order them (discovery.RevisionResolver).
func TestRevisions(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	b := newBackend(t, store)
	ctx := context.Background()
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rw := w.(discovery.RevisionWatcher)
	var last uint64
	for i, change := range []func() error{
		func() error { return nil },
		func() error {
			return b.Register(ctx, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"})
		},
		func() error {
			return b.Register(ctx, discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"})
		},
		func() error { return b.Deregister(ctx, discovery.Instance{Service: "payments", ID: "p-1"}) },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
		_, wrev, err := rw.NextRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, rrev, err := b.ResolveRevision(ctx, "payments")
		if err != nil {
			t.Fatal(err)
		}
		if wrev == 0 || wrev != rrev || (i > 0 && wrev <= last) {
			t.Fatalf("step %d: watcher revision %d, Resolve revision %d, previous %d; want equal, known and growing",
				i, wrev, rrev, last)
		}
		last = wrev
	}
}
