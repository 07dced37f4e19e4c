package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
)

// Register costs one JetStream request, as a raw key-value Put or Create
// does, whatever the key holds: nothing, a removal marker (the instance
// was deregistered a moment ago), or another process's value (which it
// takes over).
func TestRegisterIsOneRequest(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.TTL = time.Minute // no renewal during the test
	b := newBackend(t, cfg)
	kv := rawKV(t, srv.URL(), "roster")
	// sent counts the messages the server has received from the Backend's
	// connection (named "roster"): its publishes and JetStream requests.
	sent := func() int64 {
		cz, err := srv.NATS().Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, c := range cz.Conns {
			if c.Name == "roster" {
				n += c.InMsgs
			}
		}
		return n
	}
	register := func(what string) {
		t.Helper()
		before := sent()
		if err := b.Register(t.Context(), p1); err != nil {
			t.Fatal(err)
		}
		if n := sent() - before; n != 1 {
			t.Errorf("Register of %s: %d messages to the server; want 1", what, n)
		}
		if ok, err := present(t.Context(), kv, p1Key, p1); !ok || err != nil {
			t.Errorf("Register of %s: key present = %v, %v; want true", what, ok, err)
		}
		waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
	}

	register("a new key")
	if err := b.Deregister(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	register("a key just deregistered (a purge marker)")
	if err := b.Deregister(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), p1Key, []byte(`{"service":"payments","id":"p-1","address":"10.9.9.9:80"}`)); err != nil {
		t.Fatal(err)
	}
	register("a key another process holds")
	// The key is this Backend's now: another process that registers the
	// instance later takes it over, and this one reports the conflict.
	b2 := newBackend(t, cfg)
	if err := b2.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, p1.Key(), discovery.StateConflict, 5*time.Second)
}
