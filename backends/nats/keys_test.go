package nats_test

import (
	"errors"
	"testing"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
)

// Names with dots map onto single subject tokens ('.' written '='), and
// back; a value that is not a valid instance under its own key is skipped.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	in := discovery.Instance{Service: "pay.ments", Address: "10.0.0.7:8080"}
	if err := b.Register(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, srv.URL(), "roster")
	const key = "pay=ments.10=0=0=7-8080"
	e, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	want := in
	want.ID = discovery.IDFromAddress(in.Address)
	if got := string(e.Value()); got != mustJSON(want) {
		t.Errorf("value = %s; want %s", got, mustJSON(want))
	}
	// Foreign values: not JSON, and an instance stored under another ID.
	if _, err := kv.Put(t.Context(), "pay=ments.bogus", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "pay=ments.other", []byte(mustJSON(want))); err != nil {
		t.Fatal(err)
	}
	got, err := b.Resolve(t.Context(), "pay.ments")
	if err != nil || len(got) != 1 || !got[0].Equal(want) {
		t.Errorf("Resolve(pay.ments) = %v, %v; want only %v", got, err, want)
	}
	// Names that are no subject token are refused as every backend refuses
	// them (discovery.Resolver's contract), so no wildcard reaches NATS.
	for _, service := range []string{"*", ">", "pay.*", "pay ments"} {
		got, err := b.Resolve(t.Context(), service)
		if !errors.Is(err, discovery.ErrInvalidInstance) || len(got) != 0 {
			t.Errorf("Resolve(%q) = %v, %v; want no set and an error wrapping ErrInvalidInstance", service, got, err)
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		opt   natstest.Option
		right func(*nats.Config)
		wrong func(*nats.Config)
	}{
		{"user", natstest.WithUser("roster", "secret"),
			func(c *nats.Config) { c.Username, c.Password = "roster", "secret" },
			func(c *nats.Config) { c.Username, c.Password = "roster", "nope" }},
		{"token", natstest.WithToken("tok"),
			func(c *nats.Config) { c.Token = "tok" },
			func(c *nats.Config) { c.Token = "nope" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t, tc.opt)
			cfg := testConfig(t, srv.URL(), "roster")
			tc.wrong(&cfg)
			if b, err := nats.New(cfg); err == nil {
				b.Close()
				t.Fatal("New with wrong credentials succeeded")
			}
			cfg = testConfig(t, srv.URL(), "roster")
			tc.right(&cfg)
			b := newBackend(t, cfg)
			if err := b.Register(t.Context(), p1); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithTLS())
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.TLS = srv.ClientTLSConfig()
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	got, err := b.Resolve(t.Context(), p1.Service)
	if err != nil || len(got) != 1 || !got[0].Equal(p1) {
		t.Fatalf("Resolve over TLS = %v, %v; want [p-1]", got, err)
	}
	// Without the server's authority, the connection is refused.
	cfg = testConfig(t, srv.URL(), "roster")
	if b, err := nats.New(cfg); err == nil {
		b.Close()
		t.Fatal("New without trusting the server's certificate succeeded")
	}
}
