package discovery_test

import (
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

func status(service, id string, state discovery.State) discovery.Status {
	return discovery.Status{Instance: inst(service, id), State: state}
}

func TestStateString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		state discovery.State
		want  string
	}{
		{discovery.StateRegistering, "registering"},
		{discovery.StateRegistered, "registered"},
		{discovery.StateRetrying, "retrying"},
		{discovery.StateLost, "lost"},
		{discovery.StateConflict, "conflict"},
		{discovery.StateDeregistered, "deregistered"},
		{0, "State(0)"},
		{-1, "State(-1)"},
		{discovery.StateDeregistered + 1, "State(7)"},
		{100, "State(100)"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if got := tc.state.String(); got != tc.want {
				t.Errorf("State(%d).String() = %q, want %q", int(tc.state), got, tc.want)
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		st   discovery.Status
		want string
	}{
		{"registered", status("payments", "p-1", discovery.StateRegistered), "payments/p-1 registered"},
		{
			name: "retrying",
			st: discovery.Status{Instance: inst("payments", "p-1"), State: discovery.StateRetrying,
				Attempt: 2, RetryIn: 2 * time.Second, Err: errors.New("connection refused")},
			want: "payments/p-1 retrying (attempt 2, next in 2s): connection refused",
		},
		{
			name: "conflict",
			st:   discovery.Status{Instance: inst("payments", "p-1"), State: discovery.StateConflict, Err: discovery.ErrConflict},
			want: "payments/p-1 conflict: discovery: instance owned by another registrar",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.st.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}
