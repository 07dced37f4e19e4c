// Package testwait waits, in roster's tests, for a condition that must come
// to hold: the one polling helper every package's tests share. It imports
// testing, so only _test.go files may import it.
package testwait

import (
	"testing"
	"time"
)

// Interval is how often Until checks its condition.
const Interval = 5 * time.Millisecond

// Until calls cond at once and then every Interval until it returns true,
// and fails tb (with Fatalf, naming what it waited for) if d passes first.
// Conditions should be exact, and d generous: it bounds a wait for
// something that must happen, never how long something must not.
//
// Inside a testing/synctest bubble the waits between checks advance the
// bubble's fake clock once every other goroutine of the bubble is blocked.
func Until(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(Interval)
	}
}
