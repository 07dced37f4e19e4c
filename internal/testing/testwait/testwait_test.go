package testwait_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-sd/roster/internal/testing/testwait"
)

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn with a fatalTB on a goroutine of its own and returns what
// Fatalf got, or "" if fn returned.
func run(fn func(tb testing.TB)) string {
	tb := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tb)
	}()
	<-done
	return tb.msg
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int64
	msg := run(func(tb testing.TB) {
		testwait.Until(tb, time.Minute, "the third call", func() bool { return calls.Add(1) == 3 })
	})
	if msg != "" {
		t.Errorf("Until failed: %s", msg)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("condition called %d times, want 3: Until returns as soon as it holds", got)
	}
}

func TestUntilFailsAfterTheTimeout(t *testing.T) {
	start := time.Now()
	msg := run(func(tb testing.TB) {
		testwait.Until(tb, 50*time.Millisecond, "never", func() bool { return false })
		t.Error("Until returned with the condition false")
	})
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Until gave up after %v, want at least its 50ms", d)
	}
	for _, want := range []string{"50ms", "never"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure %q does not mention %q", msg, want)
		}
	}
}
