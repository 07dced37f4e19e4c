package retry_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/roster-sd/roster/retry"
)

// waitLong bounds every wait for something that must happen soon; it is
// generous so that a loaded machine does not fail the tests, and still far
// below the hour-long delays the tests cut short.
const waitLong = 5 * time.Second

var errFlaky = errors.New("flaky")

// draws returns the first n delays of a fresh Backoff of p.
func draws(t *testing.T, p retry.Policy, n int) []time.Duration {
	t.Helper()
	b := p.Backoff()
	out := make([]time.Duration, 0, n)
	for i := range n {
		d, stop := b.Next()
		if stop {
			t.Fatalf("Backoff stopped at draw %d", i+1)
		}
		out = append(out, d)
	}
	return out
}

func TestDefault(t *testing.T) {
	t.Parallel()
	got := retry.Default()
	want := retry.Policy{Base: time.Second, Max: 30 * time.Second, Jitter: 0.2}
	if got != want {
		t.Errorf("Default() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestBackoffSequence(t *testing.T) {
	t.Parallel()
	s := time.Second
	cases := []struct {
		name   string
		policy retry.Policy
		want   []time.Duration
	}{
		{
			name:   "default without jitter",
			policy: retry.Policy{Base: retry.DefaultBase, Max: retry.DefaultMax},
			want:   []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s, 30 * s},
		},
		{
			name:   "zero policy means the defaults",
			policy: retry.Policy{},
			want:   []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s},
		},
		{
			name:   "base equals max",
			policy: retry.Policy{Base: 5 * s, Max: 5 * s},
			want:   []time.Duration{5 * s, 5 * s, 5 * s},
		},
		{
			name:   "cap between powers",
			policy: retry.Policy{Base: 100 * time.Millisecond, Max: 500 * time.Millisecond},
			want:   []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := draws(t, tc.policy, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Errorf("delays = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBackoffDefaultJitterRange(t *testing.T) {
	t.Parallel()
	s := time.Second
	want := []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s, 30 * s}
	jittered := 0
	for range 50 {
		got := draws(t, retry.Default(), len(want))
		for n, d := range got {
			lo := time.Duration(float64(want[n]) * (1 - retry.DefaultJitter))
			if d < lo || d > want[n] {
				t.Errorf("delay %d = %v, want within [%v, %v]", n+1, d, lo, want[n])
			}
			if d != want[n] {
				jittered++
			}
		}
	}
	if jittered == 0 {
		t.Errorf("no delay was jittered in 400 draws")
	}
}

func TestBackoffNeverExceedsMax(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		policy retry.Policy
	}{
		{"default", retry.Default()},
		{"no jitter", retry.Policy{Base: time.Millisecond, Max: time.Hour}},
		{"large jitter", retry.Policy{Base: 3 * time.Millisecond, Max: 7 * time.Second, Jitter: 0.99}},
		{"odd base", retry.Policy{Base: time.Second + time.Nanosecond, Max: time.Minute, Jitter: 0.5}},
		{"one nanosecond", retry.Policy{Base: time.Nanosecond, Max: 24 * time.Hour}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// 100 draws run the doubling far past the range of int64.
			for n, d := range draws(t, tc.policy, 100) {
				if d <= 0 || d > tc.policy.Max {
					t.Fatalf("delay %d = %v, want within (0, %v]", n+1, d, tc.policy.Max)
				}
			}
		})
	}
}

func TestBackoffFreshStartsFromBase(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Base: time.Second, Max: time.Minute}
	b1 := p.Backoff()
	for range 5 {
		b1.Next()
	}
	b2 := p.Backoff()
	if got, _ := b2.Next(); got != time.Second {
		t.Errorf("first delay of a fresh Backoff = %v, want %v", got, time.Second)
	}
	if got, _ := b1.Next(); got != 32*time.Second {
		t.Errorf("sixth delay of the first Backoff = %v, want 32s: a fresh Backoff must not share state", got)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		policy    retry.Policy
		wantField string // "" for a valid policy
	}{
		{"zero", retry.Policy{}, ""},
		{"default", retry.Default(), ""},
		{"base equals max", retry.Policy{Base: time.Second, Max: time.Second}, ""},
		{"largest jitter", retry.Policy{Jitter: 0.999}, ""},
		{"base below default max", retry.Policy{Base: 10 * time.Second}, ""},
		{"negative base", retry.Policy{Base: -time.Second}, "Base"},
		{"negative max", retry.Policy{Max: -time.Second}, "Max"},
		{"max below base", retry.Policy{Base: 2 * time.Second, Max: time.Second}, "Max"},
		{"base above default max", retry.Policy{Base: time.Minute}, "Max"},
		{"max below default base", retry.Policy{Max: time.Millisecond}, "Max"},
		{"negative jitter", retry.Policy{Jitter: -0.1}, "Jitter"},
		{"jitter one", retry.Policy{Jitter: 1}, "Jitter"},
		{"jitter above one", retry.Policy{Jitter: 1.5}, "Jitter"},
		{"jitter infinite", retry.Policy{Jitter: math.Inf(1)}, "Jitter"},
		{"jitter NaN", retry.Policy{Jitter: math.NaN()}, "Jitter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.policy.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, retry.ErrInvalidPolicy) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalidPolicy", err)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("Validate() = %q, want it to name %s", err, tc.wantField)
			}
		})
	}
}

func TestBackoffOfInvalidPolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		policy retry.Policy
		want   time.Duration // first delay
	}{
		{"negative base", retry.Policy{Base: -time.Second, Max: time.Minute}, retry.DefaultBase},
		{"negative max", retry.Policy{Base: time.Second, Max: -time.Second}, time.Second},
		{"max below base", retry.Policy{Base: 2 * time.Second, Max: time.Second}, 2 * time.Second},
		{"negative jitter", retry.Policy{Base: time.Second, Jitter: -1}, time.Second},
		{"jitter above one", retry.Policy{Base: time.Second, Jitter: 2}, time.Second},
		{"jitter NaN", retry.Policy{Base: time.Second, Jitter: math.NaN()}, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := draws(t, tc.policy, 10)
			if got[0] != tc.want {
				t.Errorf("first delay = %v, want %v", got[0], tc.want)
			}
			for n, d := range got {
				if d <= 0 {
					t.Errorf("delay %d = %v, want positive", n+1, d)
				}
			}
		})
	}
}

func TestDoSucceedsAfterFailures(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Base: time.Millisecond, Max: time.Second}
	calls := 0
	var failures []retry.Failure
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errFlaky
		}
		return nil
	}, retry.OnFailure(func(f retry.Failure) { failures = append(failures, f) }))
	if err != nil {
		t.Fatalf("Do() = %v, want nil", err)
	}
	if calls != 3 {
		t.Errorf("op ran %d times, want 3", calls)
	}
	want := []retry.Failure{
		{Attempt: 1, Err: errFlaky, Delay: time.Millisecond},
		{Attempt: 2, Err: errFlaky, Delay: 2 * time.Millisecond},
	}
	if !slices.Equal(failures, want) {
		t.Errorf("failures = %+v, want %+v", failures, want)
	}
}

func TestDoPermanent(t *testing.T) {
	t.Parallel()
	inner := errors.New("bad request")
	cases := []struct {
		name string
		err  error
	}{
		{"permanent", retry.Permanent(inner)},
		{"wrapped permanent", errors.Join(errors.New("context"), retry.Permanent(inner))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls, reported := 0, 0
			err := retry.Policy{Base: time.Hour, Max: time.Hour}.Do(context.Background(),
				func(context.Context) error {
					calls++
					return tc.err
				},
				retry.OnFailure(func(retry.Failure) { reported++ }))
			if err != inner {
				t.Errorf("Do() = %v, want exactly the inner error %v", err, inner)
			}
			if calls != 1 {
				t.Errorf("op ran %d times, want 1", calls)
			}
			if reported != 0 {
				t.Errorf("OnFailure ran %d times for a permanent error, want 0", reported)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	if err := retry.Permanent(nil); err != nil {
		t.Errorf("Permanent(nil) = %v, want nil", err)
	}
	inner := errors.New("bad request")
	err := retry.Permanent(inner)
	if got, want := err.Error(), inner.Error(); got != want {
		t.Errorf("Permanent(err).Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, inner) {
		t.Errorf("errors.Is(Permanent(err), err) = false")
	}
}

func TestDoCancelDuringWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := retry.Policy{Base: time.Hour, Max: time.Hour}
	calls := 0
	var cancelled time.Time
	err := p.Do(ctx, func(context.Context) error {
		calls++
		return errFlaky
	}, retry.OnFailure(func(retry.Failure) {
		// Cancel shortly after Do has started its hour-long wait.
		time.AfterFunc(20*time.Millisecond, func() {
			cancelled = time.Now()
			cancel()
		})
	}))
	returned := time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do() = %v, want context.Canceled", err)
	}
	if !errors.Is(err, errFlaky) {
		t.Errorf("Do() = %v, want it to wrap the last failure", err)
	}
	if calls != 1 {
		t.Errorf("op ran %d times, want 1", calls)
	}
	if cancelled.IsZero() {
		t.Fatal("Do() returned before ctx was cancelled")
	}
	if d := returned.Sub(cancelled); d > waitLong {
		t.Errorf("Do() returned %v after cancel, want at once", d)
	}
}

func TestDoContextDoneBeforeStart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := retry.Default().Do(ctx, func(context.Context) error {
		calls++
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do() = %v, want context.Canceled", err)
	}
	if calls != 0 {
		t.Errorf("op ran %d times on a cancelled ctx, want 0", calls)
	}
}

func TestDoOpCancelsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := retry.Policy{Base: time.Hour, Max: time.Hour}.Do(ctx, func(context.Context) error {
		calls++
		cancel()
		return errFlaky
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) {
		t.Errorf("Do() = %v, want context.Canceled wrapping the failure", err)
	}
	if calls != 1 {
		t.Errorf("op ran %d times, want 1", calls)
	}
}

func TestDoWakeOn(t *testing.T) {
	t.Parallel()
	wake := make(chan struct{})
	failed := make(chan struct{}, 1)
	go func() {
		<-failed
		wake <- struct{}{} // blocks until Do is waiting
	}()
	calls := 0
	start := time.Now()
	err := retry.Policy{Base: time.Hour, Max: time.Hour}.Do(context.Background(),
		func(context.Context) error {
			calls++
			if calls == 1 {
				return errFlaky
			}
			return nil
		},
		retry.OnFailure(func(retry.Failure) { failed <- struct{}{} }),
		retry.WakeOn(wake))
	if err != nil {
		t.Errorf("Do() = %v, want nil", err)
	}
	if calls != 2 {
		t.Errorf("op ran %d times, want 2", calls)
	}
	if d := time.Since(start); d > waitLong {
		t.Errorf("Do() took %v, want the wake to cut the hour-long wait short", d)
	}
}

// Many processes woken by the same event spread their next attempts over
// [0, jitter) instead of retrying in the same instant. synctest's clock
// makes the delays exact.
func TestDoWakeJitterSpreadsWokenAttempts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const processes, jitter = 50, 400 * time.Millisecond
		wake := make(chan struct{})
		woken := make(chan time.Time, processes)
		var delays []time.Duration
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range processes {
			wg.Go(func() {
				calls := 0
				err := retry.Policy{Base: time.Hour, Max: time.Hour}.Do(context.Background(),
					func(context.Context) error {
						calls++
						if calls == 1 {
							return errFlaky
						}
						mu.Lock()
						delays = append(delays, time.Since(<-woken))
						mu.Unlock()
						return nil
					},
					retry.WakeOn(wake), retry.WakeJitter(jitter))
				if err != nil {
					t.Errorf("Do() = %v, want nil", err)
				}
			})
		}
		synctest.Wait() // every process waits out its hour-long delay
		now := time.Now()
		for range processes {
			woken <- now
		}
		close(wake)
		wg.Wait()
		if len(delays) != processes {
			t.Fatalf("%d second attempts; want %d", len(delays), processes)
		}
		slices.Sort(delays)
		if delays[0] < 0 || delays[len(delays)-1] >= jitter {
			t.Errorf("woken attempts after %v to %v; want within [0, %v)", delays[0], delays[len(delays)-1], jitter)
		}
		if spread := delays[len(delays)-1] - delays[0]; spread < jitter/2 {
			t.Errorf("50 woken attempts spread over %v; want most of %v", spread, jitter)
		}
	})
}

func TestDoWakeOnClosedChannel(t *testing.T) {
	t.Parallel()
	wake := make(chan struct{})
	close(wake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	err := retry.Policy{Base: time.Hour, Max: time.Hour}.Do(ctx,
		func(context.Context) error {
			if calls.Add(1) == 4 {
				cancel()
			}
			return errFlaky
		},
		retry.WakeOn(wake))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) {
		t.Errorf("Do() = %v, want context.Canceled wrapping the last failure", err)
	}
	if got := calls.Load(); got != 4 {
		t.Errorf("op ran %d times, want 4", got)
	}
}

func TestBackoffNeverStops(t *testing.T) {
	t.Parallel()
	p := retry.Policy{Base: time.Millisecond, Max: time.Second}
	got := draws(t, p, 1000) // fails on a stop
	if last := got[len(got)-1]; last != time.Second {
		t.Errorf("delay 1000 = %v, want the cap %v", last, time.Second)
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	close(closed)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		wake <-chan struct{}
		want error
	}{
		{"elapses", context.Background(), time.Millisecond, nil, nil},
		{"zero", context.Background(), 0, nil, nil},
		{"woken", context.Background(), time.Hour, closed, nil},
		{"cancelled", cancelled, time.Hour, nil, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			if got := retry.Sleep(tc.ctx, tc.d, tc.wake); got != tc.want {
				t.Errorf("Sleep() = %v, want %v", got, tc.want)
			}
			if d := time.Since(start); d > waitLong {
				t.Errorf("Sleep() took %v", d)
			}
		})
	}
}

// Forever waits the policy's delays between failed sessions, counts the
// failures in a row, starts afresh after a session that made progress,
// and ends with ctx. synctest's clock makes the delays exact.
func TestForever(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := retry.Policy{Base: time.Second, Max: 4 * time.Second}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Sessions: fail, fail, fail, progress then fail, fail; then the
		// test ends ctx.
		progress := []bool{false, false, false, true, false}
		var got []retry.Failure
		var at []time.Duration
		start := time.Now()
		session := 0
		p.Forever(ctx, func(context.Context) (bool, error) {
			at = append(at, time.Since(start))
			if session == len(progress) {
				cancel()
				return false, ctx.Err()
			}
			session++
			return progress[session-1], fmt.Errorf("session %d", session)
		}, func(f retry.Failure) { got = append(got, f) })

		wantAt := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 8 * time.Second, 10 * time.Second}
		if !slices.Equal(at, wantAt) {
			t.Errorf("sessions started at %v; want %v", at, wantAt)
		}
		wantAttempts := []int{1, 2, 3, 1, 2}
		wantDelays := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, time.Second, 2 * time.Second}
		if len(got) != len(wantAttempts) {
			t.Fatalf("%d failures reported; want %d: %+v", len(got), len(wantAttempts), got)
		}
		for i, f := range got {
			if f.Attempt != wantAttempts[i] || f.Delay != wantDelays[i] || f.Err == nil || f.Err.Error() != fmt.Sprintf("session %d", i+1) {
				t.Errorf("failure %d = %+v; want attempt %d, delay %v, error session %d", i, f, wantAttempts[i], wantDelays[i], i+1)
			}
		}
	})
}

func TestOrDefault(t *testing.T) {
	if got := (retry.Policy{}).OrDefault(); got != retry.Default() {
		t.Errorf("zero policy OrDefault = %+v; want Default()", got)
	}
	p := retry.Policy{Base: time.Millisecond, Max: time.Second}
	if got := p.OrDefault(); got != p {
		t.Errorf("OrDefault = %+v; want %+v unchanged", got, p)
	}
}

// A wait cut short by WakeOn (the connection is back) restarts the backoff
// with ResetOnWake: a failure right after the return waits Base, not the
// delay the outage had grown to (issue #21: processes waited 30 s after a
// leader change that followed a registry's return).
func TestDoResetOnWake(t *testing.T) {
	t.Parallel()
	for _, reset := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			wake := make(chan struct{}, 1)
			var delays []time.Duration
			calls := 0
			opts := []retry.Option{
				retry.OnFailure(func(f retry.Failure) {
					delays = append(delays, f.Delay)
					if f.Attempt == 3 {
						wake <- struct{}{} // back during the third wait
					}
				}),
				retry.WakeOn(wake),
			}
			if reset {
				opts = append(opts, retry.ResetOnWake())
			}
			err := retry.Policy{Base: time.Second, Max: time.Hour}.Do(context.Background(),
				func(context.Context) error {
					calls++
					if calls <= 4 {
						return errFlaky
					}
					return nil
				}, opts...)
			if err != nil {
				t.Fatalf("Do() = %v, want nil", err)
			}
			want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
			if reset {
				want[3] = time.Second
			}
			if !slices.Equal(delays, want) {
				t.Errorf("ResetOnWake %v: delays %v, want %v", reset, delays, want)
			}
		})
	}
}
