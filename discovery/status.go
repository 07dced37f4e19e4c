package discovery

import (
	"fmt"
	"strconv"
	"time"
)

// State is the phase of one registration's life.
type State int

// The states of a registration. A registration starts Registering, becomes
// Registered once the registry holds it, moves between Registered,
// Retrying, Lost and Conflict while faults come and go, and ends
// Deregistered.
const (
	// StateRegistering: the first write has not completed yet.
	StateRegistering State = iota + 1
	// StateRegistered: the registry holds the instance and the backend is
	// keeping it there. The only state in which a readiness probe should
	// pass.
	StateRegistered
	// StateRetrying: keeping the instance published failed; the backend
	// retries after Status.RetryIn (attempt Status.Attempt, cause
	// Status.Err). The registry may still hold the instance.
	StateRetrying
	// StateLost: the registry no longer holds the instance (its lease
	// expired, or someone removed it) and the backend is restoring it.
	StateLost
	// StateConflict: another registrar has published the same service and
	// ID and owns it now; this backend takes it back once it is gone.
	// Status.Err wraps ErrConflict.
	StateConflict
	// StateDeregistered: the instance was removed by Deregister or Close.
	// It is the final state.
	StateDeregistered
)

var stateNames = [...]string{
	StateRegistering:  "registering",
	StateRegistered:   "registered",
	StateRetrying:     "retrying",
	StateLost:         "lost",
	StateConflict:     "conflict",
	StateDeregistered: "deregistered",
}

// String returns the lower-case name of the state, e.g. "retrying".
func (s State) String() string {
	if s > 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Status is the state of one registration at one moment.
type Status struct {
	// Instance is the registered instance (a copy).
	Instance Instance
	// State is the registration's phase.
	State State
	// Attempt counts the failed attempts of the current retry sequence,
	// from 1; zero outside StateRetrying.
	Attempt int
	// RetryIn is the delay before the next attempt in StateRetrying.
	RetryIn time.Duration
	// Err is the cause of StateRetrying, StateLost or StateConflict.
	Err error
	// Since is when the registration entered State.
	Since time.Time
	// WasRegistered reports that the registration has been
	// StateRegistered at least once since it was registered with this
	// backend: a registration retrying after an outage has it, one still
	// waiting for its first write does not. Readiness probes use it (see
	// package statushttp). backendkit.StatusBoard sets it.
	WasRegistered bool
}

// String describes the status in one line, e.g.
// "payments/p-1 retrying (attempt 2, next in 2s): connection refused".
func (s Status) String() string {
	out := s.Instance.Key().String() + " " + s.State.String()
	if s.State == StateRetrying {
		out += fmt.Sprintf(" (attempt %d, next in %v)", s.Attempt, s.RetryIn)
	}
	if s.Err != nil {
		out += ": " + s.Err.Error()
	}
	return out
}
