package health

import (
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// TestMachineThresholds: not ready until SuccessThreshold passes in a row;
// serving until FailureThreshold failures in a row; a failure's output is
// the reason; passes and failures that do not reach a threshold change
// nothing.
func TestMachineThresholds(t *testing.T) {
	cfg, err := Config{SuccessThreshold: 2, FailureThreshold: 3}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(cfg)
	if m.res.Condition != discovery.ConditionNotReady || m.res.Reason != waitingReason {
		t.Fatalf("before any check: %v %q", m.res.Condition, m.res.Reason)
	}
	down := errors.New("db down\nstack")
	nr, s := discovery.ConditionNotReady, discovery.ConditionServing
	steps := []struct {
		err     error
		want    discovery.Condition
		reason  string
		changed bool
	}{
		{nil, nr, waitingReason, false}, // 1 pass of 2
		{down, nr, "db down stack", true},
		{nil, nr, "db down stack", false},
		{nil, s, "", true}, // 2 passes in a row
		{down, s, "", false},
		{down, s, "", false},
		{nil, s, "", false}, // resets the failures
		{down, s, "", false},
		{down, s, "", false},
		{down, nr, "db down stack", true}, // 3 in a row
		{errors.New("other"), nr, "other", true},
		{nil, nr, "other", false},
		{nil, s, "", true},
	}
	for i, st := range steps {
		changed := m.observe(time.Now(), time.Millisecond, st.err)
		if m.res.Condition != st.want || m.res.Reason != st.reason || changed != st.changed {
			t.Fatalf("check %d (err %v): %v %q changed %v; want %v %q changed %v",
				i+1, st.err, m.res.Condition, m.res.Reason, changed, st.want, st.reason, st.changed)
		}
		if m.res.Checks != i+1 {
			t.Errorf("Checks = %d, want %d", m.res.Checks, i+1)
		}
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Period: DefaultPeriod, Timeout: DefaultTimeout, SuccessThreshold: 1, FailureThreshold: 3}
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	for _, c := range []Config{{Period: -1}, {Timeout: -1}, {InitialDelay: -1}, {SuccessThreshold: -1}, {FailureThreshold: -2}} {
		if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", c, err)
		}
	}
}
