package nats_test

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testlog"
	"github.com/roster-sd/roster/internal/testwait"
	"github.com/roster-sd/roster/retry"
)

// logGate is a log output that holds the first line containing a given
// message until release: a retry loop that logs its failure before it
// waits is held there, between the failed attempt and the wait, while the
// test changes the connection.
type logGate struct {
	msg  string
	next io.Writer
	hit  chan struct{} // closed when the line is held
	free chan struct{} // closed by release

	once sync.Once
}

func newLogGate(t *testing.T, msg string) (*logGate, hclog.Logger) {
	g := &logGate{msg: msg, next: testlog.Writer(t), hit: make(chan struct{}), free: make(chan struct{})}
	t.Cleanup(g.release)
	return g, hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: g, Level: hclog.Debug, DisableTime: true})
}

func (g *logGate) Write(p []byte) (int, error) {
	if strings.Contains(string(p), g.msg) {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.hit)
			<-g.free
		}
	}
	return g.next.Write(p)
}

func (g *logGate) release() {
	select {
	case <-g.free:
	default:
		close(g.free)
	}
}

// reconnectWhileHeld waits for g's line, lets the Backend reconnect
// through proxy, waits until it knows it, and releases the line.
func reconnectWhileHeld(t *testing.T, g *logGate, proxy *natstest.Proxy, connected func() bool) {
	t.Helper()
	select {
	case <-g.hit:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q logged within 10s", g.msg)
	}
	proxy.Accept()
	testwait.Until(t, 5*time.Second, "the Backend sees the link back", connected)
	g.release()
}

// longRetry's delay far exceeds the bounds below: only the reconnection
// can end a wait in time.
var longRetry = retry.Policy{Base: 30 * time.Second, Max: 30 * time.Second}

// A connection that comes back between a failed renewal and the keeper's
// wait still ends the wait: the keeper does not sleep out its backoff
// after NATS is back.
func TestKeeperRetriesAtOnceWhenBackDuringItsFailure(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	gate, logger := newLogGate(t, "failed to renew instances, will retry")
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.Retry = longRetry
	cfg.Logger = logger
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}

	proxy.Reject()
	reconnectWhileHeld(t, gate, proxy, func() bool { return b.BackendFacts().Connected })
	waitState(t, b, p1.Key(), discovery.StateRegistered, 5*time.Second)
}

// The same for a Register waiting through an outage.
func TestRegisterRetriesAtOnceWhenBackDuringItsFailure(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	gate, logger := newLogGate(t, "failed to register, will retry")
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.Retry = longRetry
	cfg.Logger = logger
	b := newBackend(t, cfg)
	proxy.Reject()
	testwait.Until(t, 5*time.Second, "the Backend sees the link down", func() bool { return !b.BackendFacts().Connected })

	done := make(chan error, 1)
	go func() { done <- b.Register(t.Context(), p1) }()
	reconnectWhileHeld(t, gate, proxy, func() bool { return b.BackendFacts().Connected })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Register through the outage: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Register did not return within 5s of the link coming back")
	}
}
