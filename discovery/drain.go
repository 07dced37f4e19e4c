package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DrainReason is the Reason Drain publishes for an instance registered
// without one.
const DrainReason = "draining before it leaves"

// DrainDeregisterTimeout bounds the removals of Drain once its context
// has ended.
const DrainDeregisterTimeout = 5 * time.Second

// Drain takes instances out of rotation before they leave, so that a
// client sees a deliberate departure: it registers each of ins on r again
// in ConditionDraining (an update in place, one write each), waits delay
// for clients to see it and stop sending new work, then deregisters them.
// Each instance must be the one registered (Drain publishes it as given,
// with Condition and, if empty, Reason changed).
//
// If ctx ends while waiting, Drain deregisters at once and returns ctx's
// error; if a write fails, it returns the errors joined, having still
// deregistered what it could.
func Drain(ctx context.Context, r Registrar, delay time.Duration, ins ...Instance) error {
	var errs []error
	for _, in := range ins {
		in = in.Clone()
		in.Condition = ConditionDraining
		if in.Reason == "" {
			in.Reason = DrainReason
		}
		if err := r.Register(ctx, in); err != nil {
			errs = append(errs, fmt.Errorf("discovery: drain %s: %w", in.Key(), err))
		}
	}
	if delay > 0 && ctx.Err() == nil {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("discovery: drain: cut short: %w", ctx.Err()))
		}
		t.Stop()
	}
	// Deregister even when ctx has ended (then within DrainDeregisterTimeout):
	// leaving matters more than the wait.
	dctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), DrainDeregisterTimeout)
		defer cancel()
	}
	for _, in := range ins {
		if err := r.Deregister(dctx, in); err != nil && !errors.Is(err, ErrNotRegistered) {
			errs = append(errs, fmt.Errorf("discovery: drain %s: deregister: %w", in.Key(), err))
		}
	}
	return errors.Join(errs...)
}
