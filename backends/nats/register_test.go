package nats_test

import (
	"context"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

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
	// A connection of its own receives every write to the bucket and
	// every JetStream request, in the order the server routed them. Any
	// request a Register makes comes before its write; upTo counts the
	// messages up to and including the next write of p1's key.
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *natsgo.Msg, 64)
	for _, subject := range []string{"$KV.roster.>", "$JS.API.>"} {
		if _, err := nc.ChanSubscribe(subject, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	upTo := func() int {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for n := 1; ; n++ {
			select {
			case m := <-msgs:
				if m.Subject == "$KV.roster."+p1Key {
					return n
				}
			case <-timeout:
				t.Fatalf("no write of %s within 5 s", p1Key)
			}
		}
	}
	register := func(what string) {
		t.Helper()
		if err := b.Register(t.Context(), p1); err != nil {
			t.Fatal(err)
		}
		if n := upTo(); n != 1 {
			t.Errorf("Register of %s: %d writes and requests; want 1", what, n)
		}
		waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
	}

	register("a new key")
	if err := b.Deregister(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	upTo() // the purge
	register("a key just deregistered (a purge marker)")
	if err := b.Deregister(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	upTo()
	if _, err := kv.Put(context.Background(), p1Key, []byte(`{"service":"payments","id":"p-1","address":"10.9.9.9:80"}`)); err != nil {
		t.Fatal(err)
	}
	upTo()
	register("a key another process holds")
	// The key is this Backend's now: another process that registers the
	// instance later takes it over, and this one reports the conflict.
	b2 := newBackend(t, cfg)
	if err := b2.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, p1.Key(), discovery.StateConflict, 5*time.Second)
}
