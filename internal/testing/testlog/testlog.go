// Package testlog gives tests an hclog.Logger whose output goes to t.Log, so
// a backend's logs appear with the test that produced them and only when it
// fails or runs with -v (the habit of hashicorp/raft's testing.go).
package testlog

import (
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// New returns a debug-level logger named after the test that writes to
// t.Log until the test ends; output after that, from goroutines still
// winding down, is dropped instead of panicking.
func New(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: Writer(t), Level: hclog.Debug, DisableTime: true})
}

// Writer returns a writer that passes each write to t.Log, without its
// final newline, until the test ends, and drops what comes later: the
// Output of New, for a logger a test also wants to read (combine it with
// io.MultiWriter).
func Writer(t testing.TB) io.Writer {
	w := &writer{t: t}
	t.Cleanup(w.stop)
	return w
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *writer) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
