package linebuf_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/internal/testing/linebuf"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatal runs f with a fatalRecorder on a goroutine of its own and returns
// what it failed with, or "" if it did not fail.
func fatal(t *testing.T, f func(testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestWaitForSeesConcurrentWrites(t *testing.T) {
	var b linebuf.Buffer
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Millisecond)
			fmt.Fprintf(&b, "line %d\n", i)
		})
	}
	b.WaitFor(t, "line 9\n", 5*time.Second)
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 10 || b.Len() != len(b.String()) {
		t.Errorf("buffer holds %d lines in %d bytes:\n%s", got, b.Len(), b.String())
	}
}

func TestWaitForFailsAfterTheDeadline(t *testing.T) {
	var b linebuf.Buffer
	b.Write([]byte("something else\n"))
	msg := fatal(t, func(tb testing.TB) { b.WaitFor(tb, "never", 20*time.Millisecond) })
	if !strings.Contains(msg, `no "never" within 20ms`) || !strings.Contains(msg, "something else") {
		t.Errorf("WaitFor failed with %q; want the missing text and the output so far", msg)
	}
}

func TestWantInOrder(t *testing.T) {
	text := "one\ntwo three\nfour\n"
	cases := []struct {
		want    []string
		missing string // "" when the check passes
	}{
		{[]string{"one", "three", "four"}, ""},
		{[]string{"two", "thr"}, "thr"}, // on the same line as the previous one
		{[]string{"four", "one"}, "one"},
		{[]string{"five"}, "five"},
	}
	for _, tc := range cases {
		msg := fatal(t, func(tb testing.TB) { linebuf.WantInOrder(tb, text, tc.want...) })
		switch {
		case tc.missing == "" && msg != "":
			t.Errorf("WantInOrder(%q) failed: %s", tc.want, msg)
		case tc.missing != "" && !strings.Contains(msg, fmt.Sprintf("%q", tc.missing)):
			t.Errorf("WantInOrder(%q) failed with %q; want it to name %q", tc.want, msg, tc.missing)
		}
	}
}
