package etcd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

// TestFindServices: FindServices reports the services that have keys, then
// every service written to, through an etcd restart, until ctx ends or the
// Backend is closed.
func TestFindServices(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	putKeys(t, etcdtest.Client(t, srv), map[string]string{"/roster/services/odd": `{}`}) // not <service>/<id>: ignored
	register(t, b, instance("payments", "p-1"))
	register(t, b, instance("payments", "p-2"))

	found := make(chan []string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.FindServices(ctx, func(s []string) { found <- s }) }()
	next := func() string {
		t.Helper()
		select {
		case s := <-found:
			return strings.Join(s, ",")
		case <-time.After(waitFor):
			t.Fatal("FindServices reported nothing")
			return ""
		}
	}
	if got := next(); got != "payments" {
		t.Fatalf("first services %q, want payments (once, for its two keys)", got)
	}
	register(t, b, instance("orders", "o-1"))
	if got := next(); got != "orders" {
		t.Fatalf("after orders/o-1 was written: %q", got)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("inventory", "i-1"))
	if got := next(); got != "inventory" {
		t.Fatalf("after a restart and inventory/i-1 written: %q", got)
	}

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("FindServices after ctx ended: %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("FindServices did not return when ctx ended")
	}

	listed := make(chan struct{}, 10)
	go func() { done <- b.FindServices(context.Background(), func([]string) { listed <- struct{}{} }) }()
	select {
	case <-listed: // past its read, on to its watch
	case <-time.After(waitFor):
		t.Fatal("FindServices reported nothing")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, discovery.ErrClosed) {
			t.Fatalf("FindServices after Close: %v, want ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("FindServices did not return on Close")
	}
}

// TestFindServicesEmpty: an empty prefix is reported as no services, so
// that the caller knows the read succeeded; an unreachable etcd is an
// error within RequestTimeout.
func TestFindServicesEmpty(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	found := make(chan []string, 1)
	done := make(chan error, 1)
	go func() { done <- b.FindServices(ctx, func(s []string) { found <- s }) }()
	select {
	case s := <-found:
		if len(s) != 0 {
			t.Fatalf("services of an empty prefix: %q", s)
		}
	case <-time.After(waitFor):
		t.Fatal("FindServices reported nothing for an empty prefix")
	}
	cancel()
	<-done

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := b.FindServices(context.Background(), func([]string) { t.Error("found called with etcd stopped") })
	if err == nil || errors.Is(err, context.Canceled) || time.Since(start) > waitFor {
		t.Fatalf("FindServices with etcd stopped: %v after %v; want an error within RequestTimeout", err, time.Since(start))
	}
}
