package backendkit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

func status(service, id string, state discovery.State) discovery.Status {
	return discovery.Status{Instance: inst(service, id), State: state}
}

func statusKeys(sts []discovery.Status) []string {
	out := make([]string, 0, len(sts))
	for _, st := range sts {
		out = append(out, st.Instance.Key().String()+" "+st.State.String())
	}
	return out
}

// nextStatus calls sub.Next with a deadline of d.
func nextStatus(sub discovery.StatusSubscription, d time.Duration) (discovery.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return sub.Next(ctx)
}

// drain reads every status that is pending on sub.
func drain(t *testing.T, sub discovery.StatusSubscription) []discovery.Status {
	t.Helper()
	var out []discovery.Status
	for {
		st, err := nextStatus(sub, blocked)
		if errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		out = append(out, st)
	}
}

func TestStatusBoardSetAndStatus(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()

	if got := b.Statuses(); got == nil || len(got) != 0 {
		t.Errorf("Statuses() of an empty board = %#v, want empty non-nil", got)
	}

	before := time.Now()
	b.Set(status("b", "1", discovery.StateRegistering))
	b.Set(status("a", "2", discovery.StateRegistered))
	b.Set(status("a", "1", discovery.StateRegistering))
	b.Set(status("a", "1", discovery.StateRegistered))

	st, err := b.Status("a", "1")
	if err != nil {
		t.Fatalf("Status(a, 1) error = %v", err)
	}
	if got, want := st.State, discovery.StateRegistered; got != want {
		t.Errorf("Status(a, 1).State = %v, want %v", got, want)
	}
	if st.Since.Before(before) || st.Since.After(time.Now()) {
		t.Errorf("Status(a, 1).Since = %v, want the time of Set", st.Since)
	}
	if !st.Instance.Equal(inst("a", "1")) {
		t.Errorf("Status(a, 1).Instance = %+v", st.Instance)
	}

	got := statusKeys(b.Statuses())
	want := []string{"a/1 registered", "a/2 registered", "b/1 registering"}
	if !slices.Equal(got, want) {
		t.Errorf("Statuses() = %v, want %v", got, want)
	}

	b.Set(status("a", "2", discovery.StateDeregistered))
	if got, want := statusKeys(b.Statuses()), []string{"a/1 registered", "b/1 registering"}; !slices.Equal(got, want) {
		t.Errorf("Statuses() after Deregistered = %v, want %v", got, want)
	}

	cases := []struct{ service, id string }{
		{"a", "2"},       // deregistered
		{"unknown", "1"}, // never registered
		{"a", "3"},
	}
	for _, tc := range cases {
		_, err := b.Status(tc.service, tc.id)
		if !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("Status(%s, %s) error = %v, want ErrNotRegistered", tc.service, tc.id, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.service+"/"+tc.id) {
			t.Errorf("Status(%s, %s) error %q does not name the registration", tc.service, tc.id, err)
		}
	}
}

func TestStatusBoardKeepsGivenSince(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	since := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	st := status("s", "i", discovery.StateLost)
	st.Since = since
	b.Set(st)
	got, err := b.Status("s", "i")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Since.Equal(since) {
		t.Errorf("Since = %v, want %v", got.Since, since)
	}
}

func TestStatusBoardCopiesInstances(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	in := discovery.Instance{Service: "s", ID: "i", Address: "a:1", Metadata: map[string]string{"zone": "a"}}
	b.Set(discovery.Status{Instance: in, State: discovery.StateRegistered})
	in.Metadata["zone"] = "changed input"

	st, err := b.Status("s", "i")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Instance.Metadata["zone"], "a"; got != want {
		t.Errorf("zone = %q, want %q", got, want)
	}
	st.Instance.Metadata["zone"] = "changed Status"
	b.Statuses()[0].Instance.Metadata["zone"] = "changed Statuses"
	st, _ = b.Status("s", "i")
	if got, want := st.Instance.Metadata["zone"], "a"; got != want {
		t.Errorf("zone after mutating results = %q, want %q", got, want)
	}
}

func TestStatusSubscriptionFirstYieldsCurrent(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	b.Set(status("b", "1", discovery.StateRegistered))
	b.Set(status("a", "1", discovery.StateRetrying))
	b.Set(status("c", "1", discovery.StateDeregistered))

	sub := b.SubscribeStatus()
	defer sub.Stop()
	got := statusKeys(drain(t, sub))
	want := []string{"a/1 retrying", "b/1 registered"}
	if !slices.Equal(got, want) {
		t.Errorf("first statuses = %v, want %v", got, want)
	}

	b.Set(status("b", "1", discovery.StateLost))
	b.Set(status("a", "1", discovery.StateRegistered))
	b.Set(status("b", "1", discovery.StateDeregistered))
	got = statusKeys(drain(t, sub))
	// b/1 changed first, so it comes first, with its newest state.
	want = []string{"b/1 deregistered", "a/1 registered"}
	if !slices.Equal(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
}

func TestStatusBoardSameStateNotifiesNoOne(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	cause := errors.New("connection refused")
	retrying := func(attempt int, err error) discovery.Status {
		return discovery.Status{Instance: inst("s", "i"), State: discovery.StateRetrying, Attempt: attempt, Err: err}
	}
	b.Set(retrying(1, cause))
	sub := b.SubscribeStatus()
	defer sub.Stop()
	drain(t, sub)

	b.Set(retrying(1, cause))
	b.Set(retrying(1, errors.New("connection refused"))) // same message
	if got := drain(t, sub); len(got) != 0 {
		t.Errorf("repeating a status notified %v", statusKeys(got))
	}

	cases := []struct {
		name string
		st   discovery.Status
	}{
		{"attempt", retrying(2, cause)},
		{"cause", retrying(2, errors.New("timeout"))},
		{"state", status("s", "i", discovery.StateRegistered)},
		{"instance", discovery.Status{Instance: discovery.Instance{Service: "s", ID: "i", Address: "other:1"}, State: discovery.StateRegistered}},
	}
	for _, tc := range cases {
		b.Set(tc.st)
		if got := drain(t, sub); len(got) != 1 {
			t.Errorf("changing the %s notified %v, want one status", tc.name, statusKeys(got))
		}
	}
}

func TestStatusSubscriptionSlowSubscriber(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	sub := b.SubscribeStatus()
	defer sub.Stop()

	const n = 1000
	for i := 1; i <= n; i++ {
		b.Set(discovery.Status{Instance: inst("s", "i"), State: discovery.StateRetrying, Attempt: i,
			RetryIn: time.Duration(i) * time.Millisecond, Err: errors.New("down")})
	}
	st, err := nextStatus(sub, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Attempt, n; got != want {
		t.Errorf("Next().Attempt = %d, want the latest, %d", got, want)
	}
	if got, want := st.RetryIn, n*time.Millisecond; got != want {
		t.Errorf("Next().RetryIn = %v, want %v", got, want)
	}
	if got := drain(t, sub); len(got) != 0 {
		t.Errorf("after the latest status, Next yielded %v, want nothing", statusKeys(got))
	}
}

func TestStatusBoardSetNeverBlocks(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	// Subscribers that never read.
	for range 3 {
		sub := b.SubscribeStatus()
		defer sub.Stop()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 10000; i++ {
			b.Set(discovery.Status{Instance: inst("s", fmt.Sprint(i%10)), State: discovery.StateRetrying, Attempt: i})
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Set blocked on subscribers that never read")
	}
}

func TestStatusSubscriptionNextUnblocks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		unblock func(b *backendkit.StatusBoard, sub discovery.StatusSubscription, cancel context.CancelFunc)
		want    error
	}{
		{"stop", func(_ *backendkit.StatusBoard, sub discovery.StatusSubscription, _ context.CancelFunc) { sub.Stop() }, discovery.ErrClosed},
		{"close", func(b *backendkit.StatusBoard, _ discovery.StatusSubscription, _ context.CancelFunc) { b.Close() }, discovery.ErrClosed},
		{"cancel", func(_ *backendkit.StatusBoard, _ discovery.StatusSubscription, cancel context.CancelFunc) { cancel() }, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := backendkit.NewStatusBoard()
			defer b.Close()
			sub := b.SubscribeStatus()
			defer sub.Stop()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			errc := make(chan error, 1)
			go func() {
				_, err := sub.Next(ctx)
				errc <- err
			}()
			select {
			case err := <-errc:
				t.Fatalf("Next() returned %v on an empty board, want it to block", err)
			case <-time.After(blocked):
			}
			tc.unblock(b, sub, cancel)
			select {
			case err := <-errc:
				if !errors.Is(err, tc.want) {
					t.Errorf("Next() error = %v, want %v", err, tc.want)
				}
			case <-time.After(waitLong):
				t.Fatalf("Next did not return within %v", waitLong)
			}
		})
	}
}

func TestStatusSubscriptionStopDropsPending(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	b.Set(status("s", "i", discovery.StateRegistered))
	sub := b.SubscribeStatus()
	sub.Stop()
	sub.Stop()
	if _, err := nextStatus(sub, waitLong); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next() after Stop error = %v, want ErrClosed", err)
	}
	b.Set(status("s", "i", discovery.StateLost))
	if _, err := nextStatus(sub, waitLong); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next() after Stop and Set error = %v, want ErrClosed", err)
	}
}

func TestStatusBoardClose(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	b.Set(status("s", "a", discovery.StateRegistered))
	sub := b.SubscribeStatus()
	defer sub.Stop()
	b.Set(status("s", "b", discovery.StateRegistering))

	b.Close()
	b.Close()
	b.Set(status("s", "c", discovery.StateRegistered))
	b.Set(status("s", "a", discovery.StateLost))

	// Pending statuses are still delivered, then ErrClosed.
	var got []string
	for {
		st, err := nextStatus(sub, waitLong)
		if errors.Is(err, discovery.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatalf("Next() error = %v, want a pending status or ErrClosed", err)
		}
		got = append(got, statusKeys([]discovery.Status{st})...)
	}
	if want := []string{"s/a registered", "s/b registering"}; !slices.Equal(got, want) {
		t.Errorf("after Close, Next yielded %v, want %v", got, want)
	}

	if got, want := statusKeys(b.Statuses()), []string{"s/a registered", "s/b registering"}; !slices.Equal(got, want) {
		t.Errorf("Set after Close changed the board: Statuses() = %v, want %v", got, want)
	}
	if _, err := b.Status("s", "c"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status of an instance Set after Close: error = %v, want ErrNotRegistered", err)
	}

	late := b.SubscribeStatus()
	defer late.Stop()
	if _, err := nextStatus(late, waitLong); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Next() on a subscription made after Close: error = %v, want ErrClosed", err)
	}
}

// TestStatusBoardConcurrent runs setters and subscribers together under
// -race: every subscriber ends up with the latest status of every key.
func TestStatusBoardConcurrent(t *testing.T) {
	t.Parallel()
	const (
		setters     = 4
		perSetter   = 300
		subscribers = 4
	)
	b := backendkit.NewStatusBoard()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make([]error, subscribers)
	for i := range subscribers {
		sub := b.SubscribeStatus()
		wg.Go(func() {
			defer sub.Stop()
			last := make(map[string]int)
			for {
				done := len(last) == setters
				for _, a := range last {
					done = done && a == perSetter
				}
				if done {
					return
				}
				st, err := sub.Next(ctx)
				if err != nil {
					errs[i] = fmt.Errorf("%w (latest attempts seen: %v)", err, last)
					return
				}
				key := st.Instance.Key().String()
				if st.Attempt < last[key] {
					errs[i] = fmt.Errorf("%s went back from attempt %d to %d", key, last[key], st.Attempt)
					return
				}
				last[key] = st.Attempt
			}
		})
	}
	for s := range setters {
		wg.Go(func() {
			for a := 1; a <= perSetter; a++ {
				b.Set(discovery.Status{Instance: inst("s", fmt.Sprint(s)), State: discovery.StateRetrying, Attempt: a})
				b.Statuses()
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("subscriber %d: %v", i, err)
		}
	}
}

func TestStatusBoardWasRegistered(t *testing.T) {
	t.Parallel()
	b := backendkit.NewStatusBoard()
	defer b.Close()
	sub := b.SubscribeStatus()
	defer sub.Stop()

	was := func(want bool) {
		t.Helper()
		st, err := b.Status("payments", "p-1")
		if err != nil {
			t.Fatal(err)
		}
		if st.WasRegistered != want {
			t.Errorf("%v: WasRegistered = %v, want %v", st, st.WasRegistered, want)
		}
		got, err := nextStatus(sub, time.Second)
		if err != nil || got.WasRegistered != want {
			t.Errorf("subscription: %v, WasRegistered = %v, %v; want %v", got, got.WasRegistered, err, want)
		}
	}
	cause := errors.New("no connection")
	// Before the first registration: not yet, however long it retries.
	b.Set(status("payments", "p-1", discovery.StateRegistering))
	was(false)
	b.Set(discovery.Status{Instance: inst("payments", "p-1"), State: discovery.StateRetrying, Attempt: 1, Err: cause})
	was(false)
	// From the first registration on, through every fault.
	b.Set(status("payments", "p-1", discovery.StateRegistered))
	was(true)
	b.Set(discovery.Status{Instance: inst("payments", "p-1"), State: discovery.StateRetrying, Attempt: 1, Err: cause})
	was(true)
	b.Set(discovery.Status{Instance: inst("payments", "p-1"), State: discovery.StateLost, Err: cause})
	was(true)
	// Deregistered and registered anew: not yet again.
	b.Set(status("payments", "p-1", discovery.StateDeregistered))
	if st, err := nextStatus(sub, time.Second); err != nil || st.State != discovery.StateDeregistered {
		t.Fatalf("Next = %v, %v; want deregistered", st, err)
	}
	b.Set(status("payments", "p-1", discovery.StateRegistering))
	was(false)
}
