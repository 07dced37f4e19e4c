package nats_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// blockedOnRegistration reports whether a goroutine waits in Register for
// a registration's lock (that another Register holds).
func blockedOnRegistration() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, "nats.(*Backend).Register(") {
			return true
		}
	}
	return false
}

// Two Registers of one new instance during an outage: the first gives up
// (its context ends), the second, still willing to wait, owns the outcome
// and is registered once NATS is back, rather than failing with ErrClosed
// as if someone had deregistered it.
func TestLaterRegisterOwnsTheOutcome(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	b := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	proxy.Reject()
	testwait.Until(t, 5*time.Second, "the Backend sees the link down", func() bool { return !b.BackendFacts().Connected })

	firstCtx, giveUp := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { first <- b.Register(firstCtx, p1) }()
	waitState(t, b, p1.Key(), discovery.StateRegistering, 5*time.Second)
	second := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		second <- b.Register(ctx, p1)
	}()
	testwait.Until(t, 5*time.Second, "the second Register waits for the first", blockedOnRegistration)
	giveUp()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first Register = %v; want context.Canceled", err)
	}
	proxy.Accept()
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("second Register = %v; want nil once NATS is back", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the second Register did not return within 15s of NATS coming back")
	}
	waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
	ok, err := present(t.Context(), rawKV(t, srv.URL(), "roster"), p1Key, p1)
	if !ok || err != nil {
		t.Errorf("key present = %v, %v; want the second Register's value", ok, err)
	}
}

// Deregister with a context that has ended (a shutdown path) still
// removes the instance: the key goes at once (or as soon as NATS answers),
// the status says deregistered, and a second Deregister tells the truth.
func TestDeregisterWithAnEndedContext(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Deregister(ctx, p1); !errors.Is(err, context.Canceled) {
		t.Errorf("Deregister with an ended context = %v; want context.Canceled", err)
	}
	st, err := b.Status(p1.Service, p1.ID)
	if err == nil && st.State == discovery.StateRegistered {
		t.Errorf("status after Deregister = %v; want it no longer registered", st.State)
	}
	kv := rawKV(t, srv.URL(), "roster")
	testwait.Until(t, time.Second, "the key removed (well before its TTL)", func() bool {
		ok, err := present(t.Context(), kv, p1Key, p1)
		return err == nil && !ok
	})
	if err := b.Deregister(t.Context(), p1); err != nil && !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("second Deregister = %v; want nil or ErrNotRegistered", err)
	}
	// Registering it again works and is renewed.
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
}
