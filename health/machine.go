package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// waitingReason is the Reason of an instance before its first check has
// passed.
const waitingReason = "health: waiting for the first check to pass"

// Result is the outcome of the latest check and the condition it led to.
type Result struct {
	// Condition is what the checks say: discovery.ConditionServing or
	// discovery.ConditionNotReady.
	Condition discovery.Condition
	// Reason is the Reason published with Condition: empty when serving,
	// the failing check's output otherwise.
	Reason string
	// Checks is how many checks have run; 0 before the first.
	Checks int
	// Err is the latest check's error, nil when it passed or none ran.
	Err error
	// At is when the latest check started; Duration how long it took.
	At       time.Time
	Duration time.Duration
	// Passes and Failures count the latest checks in a row that passed
	// or failed.
	Passes, Failures int
}

// machine turns check outcomes into a condition, on the thresholds.
type machine struct {
	cfg Config
	res Result
}

func newMachine(cfg Config) machine {
	return machine{cfg: cfg, res: Result{Condition: discovery.ConditionNotReady, Reason: waitingReason}}
}

// observe records one check's outcome and reports whether the published
// condition or reason changed.
func (m *machine) observe(at time.Time, d time.Duration, err error) bool {
	prev := m.res
	m.res.Checks++
	m.res.At, m.res.Duration, m.res.Err = at, d, err
	if err == nil {
		m.res.Passes++
		m.res.Failures = 0
		if m.res.Condition != discovery.ConditionServing && m.res.Passes >= m.cfg.SuccessThreshold {
			m.res.Condition, m.res.Reason = discovery.ConditionServing, ""
		}
	} else {
		m.res.Failures++
		m.res.Passes = 0
		reason := discovery.SanitizeReason(err.Error())
		switch {
		case m.res.Condition == discovery.ConditionServing && m.res.Failures >= m.cfg.FailureThreshold:
			m.res.Condition, m.res.Reason = discovery.ConditionNotReady, reason
		case m.res.Condition == discovery.ConditionNotReady:
			m.res.Reason = reason // still not ready: say why now
		}
	}
	return m.res.Condition != prev.Condition || m.res.Reason != prev.Reason
}

// runCheck runs c once under timeout; a check that outlives it fails with
// a reason that says so.
func runCheck(ctx context.Context, c Check, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := c.Check(cctx)
	if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return &timeoutError{after: timeout, err: err}
	}
	return err
}

// timeoutError is the failure of a check that outlived Config.Timeout.
// Its Timeout method says so, as a net.Error's does, so that an observer
// (WithObserver) can tell a timeout from another failure without
// importing this package.
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("health: check timed out after %v: %v", e.after, e.err)
}

func (e *timeoutError) Unwrap() error { return e.err }

// Timeout reports true: the check timed out.
func (e *timeoutError) Timeout() bool { return true }
