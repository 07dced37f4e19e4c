package health_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestObserverSeesEveryCheck: WithObserver's function is called once per
// check that ends before Close, in order, with nil for a pass, the check's error for a failure,
// and for a timeout an error whose Timeout method reports true, with the
// reason's text.
func TestObserverSeesEveryCheck(t *testing.T) {
	var n atomic.Int64
	check := health.CheckFunc(func(ctx context.Context) error {
		switch n.Add(1) {
		case 1:
			return nil
		case 2:
			return errors.New("disk full")
		}
		<-ctx.Done()
		return ctx.Err()
	})
	var mu sync.Mutex
	var errs []error
	var took []time.Duration
	r, err := health.New(newMemory(t), check, health.Config{Period: 10 * time.Millisecond, Timeout: 20 * time.Millisecond},
		health.WithObserver(func(err error, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			errs, took = append(errs, err), append(took, d)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	seen := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(errs)
	}
	testwait.Until(t, waitFor, "three checks observed", func() bool { return seen() >= 3 })
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	// A check that Close cut short is not an outcome, and not observed.
	if got := int64(len(errs)); got != n.Load() && got != n.Load()-1 {
		t.Errorf("observed %d checks; the check ran %d times, the last maybe cut short by Close", got, n.Load())
	}
	var timeout interface{ Timeout() bool }
	switch {
	case errs[0] != nil:
		t.Errorf("first check observed as %v; want nil (a pass)", errs[0])
	case errs[1] == nil || errs[1].Error() != "disk full":
		t.Errorf("second check observed as %v; want the check's error", errs[1])
	case !errors.As(errs[2], &timeout) || !timeout.Timeout():
		t.Errorf("third check observed as %v; want an error whose Timeout reports true", errs[2])
	case errs[2].Error() != "health: check timed out after 20ms: context deadline exceeded":
		t.Errorf("timeout's text is %q", errs[2].Error())
	case !errors.Is(errs[2], context.DeadlineExceeded):
		t.Errorf("timeout %v does not wrap the check's error", errs[2])
	case took[2] < 20*time.Millisecond:
		t.Errorf("timed-out check took %v; want at least its 20ms timeout", took[2])
	}
}
