package nats_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
)

// FindServices reports the services present, then each new one, without
// reading the bucket again; a server restart ends it with ErrUnavailable.
func TestFindServices(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	b := newBackend(t, cfg)
	viewer := newBackend(t, cfg)
	for _, in := range []discovery.Instance{
		{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"},
		{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"},
		{Service: "a.b", ID: "x", Address: "10.0.0.3:80"},
	} {
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	reports := make(chan []string, 100)
	done := make(chan error, 1)
	go func() { done <- viewer.FindServices(t.Context(), func(s []string) { reports <- slices.Clone(s) }) }()
	next := func() []string {
		t.Helper()
		select {
		case s := <-reports:
			return s
		case err := <-done:
			t.Fatalf("FindServices returned %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no report within 5s")
		}
		return nil
	}
	if got := next(); !slices.Equal(got, []string{"a.b", "payments"}) {
		t.Fatalf("first report %q; want the services present, [a.b payments]", got)
	}
	if err := b.Register(t.Context(), discovery.Instance{Service: "orders", ID: "o-1", Address: "10.0.0.4:80"}); err != nil {
		t.Fatal(err)
	}
	for got := next(); !slices.Equal(got, []string{"orders"}); got = next() {
		// Renewals of the others may come first (at most once a second each).
		if !slices.Contains([]string{"a.b", "payments"}, got[0]) || len(got) != 1 {
			t.Fatalf("report %q; want [orders]", got)
		}
	}

	srv.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, discovery.ErrUnavailable) {
			t.Errorf("FindServices during an outage returned %v; want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FindServices did not return within 5s of the server stopping")
	}
	natstest.Restart(t, srv)
	if err := viewer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := viewer.FindServices(context.Background(), func([]string) {}); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("FindServices after Close = %v; want ErrClosed", err)
	}
}
