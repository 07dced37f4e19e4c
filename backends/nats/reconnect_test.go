package nats_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
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

// A Register that keeps failing (here a value larger than the bucket
// allows, retried until its context ends) holds its own registration only:
// the keeper goes on renewing the others, whose keys never expire.
func TestFailingRegisterDoesNotStopRenewals(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{
		Bucket: "roster", History: 1, LimitMarkerTTL: time.Minute, MaxValueSize: 256,
	}); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	p := pollKey(t, rawKV(t, srv.URL(), "roster"), p1Key, p1)

	// Its key sorts before p-1's, so that the keeper meets it first.
	big := discovery.Instance{Service: "payments", ID: "a-big", Address: "10.0.0.9:80",
		Metadata: map[string]string{"blob": strings.Repeat("x", 512)}}
	ctx, cancel := context.WithTimeout(t.Context(), 3*testTTL)
	defer cancel()
	if err := b.Register(ctx, big); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register of a value the bucket refuses = %v; want DeadlineExceeded", err)
	}
	p.close()
	if n := p.absent.Load(); n != 0 || p.ok.Load() == 0 {
		t.Errorf("p-1's key was absent in %d of %d reads while another Register failed; want it present all along",
			n, p.ok.Load())
	}
	waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
}

// Deregister of an instance whose Register is still waiting through an
// outage ends that Register instead of waiting for it (which lasts as
// long as the outage, or the Register's context): it returns at once, the
// Register returns an error, and nothing is left registered.
func TestDeregisterEndsAWaitingRegister(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	b := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	proxy.Reject()
	testwait.Until(t, 5*time.Second, "the Backend sees the link down", func() bool { return !b.BackendFacts().Connected })

	registered := make(chan error, 1)
	go func() { registered <- b.Register(t.Context(), p1) }()
	waitState(t, b, p1.Key(), discovery.StateRegistering, 5*time.Second)
	deregistered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		deregistered <- b.Deregister(ctx, p1)
	}()
	select {
	case err := <-deregistered:
		if err != nil {
			t.Errorf("Deregister of a waiting registration = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Deregister of a waiting registration did not return within 5s")
	}
	select {
	case err := <-registered:
		if err == nil || errors.Is(err, discovery.ErrUnavailable) {
			t.Errorf("the waiting Register returned %v; want an error that does not say NATS is unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting Register did not return after Deregister")
	}
	if _, err := b.Status(p1.Service, p1.ID); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status after Deregister = %v; want ErrNotRegistered", err)
	}
	proxy.Accept()
	testwait.Until(t, 5*time.Second, "the Backend sees the link back", func() bool { return b.BackendFacts().Connected })
	if got, err := b.Resolve(t.Context(), p1.Service); err != nil || len(got) != 0 {
		t.Errorf("Resolve once NATS is back = %v, %v; want no instance", got, err)
	}
}

// While the NATS client tries to reconnect through a partition, each
// attempt holds the client's lock for up to DialTimeout, and a new
// Register's subscription waits for it: BackendFacts (a metrics scrape)
// and the other calls must not wait with it.
func TestFactsDoNotWaitForASubscription(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.DialTimeout = 10 * time.Second
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole()
	t.Cleanup(proxy.Unblackhole)
	if err := proxy.DropConnections(); err != nil {
		t.Fatal(err)
	}
	// The client redials ReconnectDelay after the drop, into the
	// partition; three failed renewals take longer than that.
	testwait.Until(t, 5*time.Second, "the keeper's third attempt", func() bool {
		st, err := b.Status(p1.Service, p1.ID)
		return err == nil && st.State == discovery.StateRetrying && st.Attempt >= 3
	})

	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = b.Register(ctx, p2) }()
	slowest := time.Duration(0)
	testwait.Until(t, 5*time.Second, "p-2 is registering", func() bool {
		start := time.Now()
		b.BackendFacts()
		slowest = max(slowest, time.Since(start))
		st, err := b.Status(p2.Service, p2.ID)
		return err == nil && st.State == discovery.StateRegistering
	})
	if slowest > time.Second {
		t.Errorf("BackendFacts took %v while a Register subscribed; want it at once", slowest)
	}
}

// A read waits for another caller opening the bucket (the first use after
// New, made while NATS was down) no longer than its own context allows.
func TestReadDoesNotOutwaitItsContextForTheBucket(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	proxy.Reject()
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.TTL = 30 * time.Second // pings far apart: the slow link below is not stale
	b := newBackend(t, cfg)
	w, err := b.Watch(t.Context(), "payments") // opens the bucket once NATS is back
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// A slow link: opening the bucket takes several round trips of 2s.
	proxy.SetLatency(time.Second)
	proxy.Accept()
	testwait.Until(t, 10*time.Second, "the Backend sees the link back", func() bool { return b.BackendFacts().Connected })

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.Resolve(ctx, "payments")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Resolve with a 300ms context took %v (%v); want it to end with its context", took, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, discovery.ErrUnavailable) {
		t.Errorf("Resolve = %v; want DeadlineExceeded", err)
	}
}
