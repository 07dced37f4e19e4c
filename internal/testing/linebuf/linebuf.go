// Package linebuf collects the output of code under test, written from any
// goroutine, for roster's own tests: a Buffer to write to and to wait on
// until a line appears, and WantInOrder to check the lines of the result.
package linebuf

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer is an io.Writer safe for concurrent use whose content can be read
// at any time and waited for. The zero value is an empty Buffer ready to
// use; a Buffer must not be copied after first use.
type Buffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // made on first use; signalled on every Write
}

// changedLocked returns b.changed, making it first if need be.
func (b *Buffer) changedLocked() chan struct{} {
	if b.changed == nil {
		b.changed = make(chan struct{}, 1)
	}
	return b.changed
}

// Write appends p to the buffer and wakes a WaitFor.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.changedLocked() <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns the number of bytes written so far.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// WaitFor waits until the buffer contains s, failing the test with the
// output so far if it does not within d. One goroutine at a time may wait.
func (b *Buffer) WaitFor(t testing.TB, s string, d time.Duration) {
	t.Helper()
	b.mu.Lock()
	changed := b.changedLocked()
	b.mu.Unlock()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !strings.Contains(b.String(), s) {
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %q within %v; output so far:\n%s", s, d, b)
		}
	}
}

// WantInOrder checks that the lines of text contain each of want, in
// order, each on a later line than the previous one, failing the test at
// the first one missing.
func WantInOrder(t testing.TB, text string, want ...string) {
	t.Helper()
	lines := strings.Split(text, "\n")
	i := 0
	for _, w := range want {
		for i < len(lines) && !strings.Contains(lines[i], w) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("output lacks %q (after the previous expected lines)", w)
		}
		i++
	}
}
