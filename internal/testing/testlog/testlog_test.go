package testlog_test

import (
	"strings"
	"testing"

	"github.com/roster-sd/roster/internal/testing/testlog"
)

// recorder is a testing.TB that keeps what is logged.
type recorder struct {
	testing.TB
	lines    []string
	cleanups []func()
}

func (r *recorder) Log(args ...any)  { r.lines = append(r.lines, args[0].(string)) }
func (r *recorder) Name() string     { return "TestX" }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Helper()          {}

func TestNewLogsToTheTestUntilItEnds(t *testing.T) {
	r := &recorder{TB: t}
	log := testlog.New(r)
	log.Debug("first", "k", "v")
	for _, f := range r.cleanups {
		f()
	}
	log.Info("after the end")
	if len(r.lines) != 1 || !strings.Contains(r.lines[0], "[DEBUG] TestX: first: k=v") {
		t.Errorf("logged %q; want one debug line, nothing after the test ended", r.lines)
	}
}
