package backendkit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// DrainOnClose is for a backend's Close that the application asked to
// drain its instances before it removes them (etcd: before it revokes its
// lease), so that clients see a deliberate departure even when the
// application does not drain them itself (discovery.Drain).
//
// It registers on r again, in discovery.ConditionDraining, every instance
// that s reports in discovery.StateRegistered (an update in place, one
// write each; the Reason is kept, or discovery.DrainReason when empty),
// then waits for the rest of d, so that clients stop sending new work
// before the instances leave. It takes at most d in all: a write still
// pending at d (the registry unreachable) is given up and reported, and
// when no instance could be published draining it does not wait. d <= 0
// does nothing. The caller, Close, then removes the instances as usual.
func DrainOnClose(r discovery.Registrar, s discovery.StatusReporter, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var errs []error
	published := false
	for _, st := range s.Statuses() {
		if st.State != discovery.StateRegistered {
			continue
		}
		in := st.Instance.Clone()
		if in.Condition != discovery.ConditionDraining {
			in.Condition = discovery.ConditionDraining
			if in.Reason == "" {
				in.Reason = discovery.DrainReason
			}
			if err := r.Register(ctx, in); err != nil {
				errs = append(errs, fmt.Errorf("drain %s on close: %w", in.Key(), err))
				continue
			}
		}
		published = true
	}
	if published {
		<-ctx.Done() // the rest of d
	}
	return errors.Join(errs...)
}
