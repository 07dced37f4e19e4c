package grpcresolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/grpcresolver"
	"github.com/roster-sd/roster/internal/testing/heldresolver"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// wait receives from ch within waitLong.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLong):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestAddressesNeverGoBackAfterResolveNow: real etcd, real gRPC servers
// and a real ClientConn. After an outage the watch's first set is late;
// meanwhile a server fails, gRPC asks ResolveNow, and the Resolve it forces
// gives a newer set (s4 registered, s2 gone). The watch's older set,
// arriving afterwards, must not replace it: gRPC's addresses never go back
// (#20 item 8).
func TestAddressesNeverGoBackAfterResolveNow(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := func(endpoints []string) etcd.Config {
		return etcd.Config{Endpoints: endpoints, TTL: 5 * time.Second,
			Retry:          retry.Policy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond},
			RequestTimeout: time.Second, ReconnectDelay: 100 * time.Millisecond, Logger: testLogger(t)}
	}
	servers, err := etcd.New(cfg(srv.Endpoints()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { servers.Close() })
	client, err := etcd.New(cfg([]string{proxy.Endpoint()}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	s1, _ := startStoppableServer(t, "s1")
	s2, stop2 := startStoppableServer(t, "s2")
	for _, in := range []discovery.Instance{s1, s2} {
		if err := servers.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	held := heldresolver.New(client)
	conn := dial(t, newBuilder(t, held, grpcresolver.WithRetry(fastRetry), grpcresolver.WithResolveNowInterval(0)))
	defer conn.Close()
	waitAnswering(t, conn, 2)

	// Outage of the client's etcd link; s3 registers meanwhile.
	proxy.Reject()
	wait(t, held.Outage, "the watch to report the outage")
	s3, _ := startStoppableServer(t, "s3")
	if err := servers.Register(ctx, s3); err != nil {
		t.Fatal(err)
	}
	held.Armed.Store(true)
	proxy.Accept()
	wait(t, held.Held, "the watch's first set after the outage") // [s1 s2 s3], held

	// s4 comes, s2 fails and leaves: gRPC asks ResolveNow, whose Resolve
	// gives [s1 s3 s4].
	s4, _ := startStoppableServer(t, "s4")
	if err := servers.Register(ctx, s4); err != nil {
		t.Fatal(err)
	}
	if err := servers.Deregister(ctx, s2); err != nil {
		t.Fatal(err)
	}
	stop2()
	// A call may still go to s2 as it stops, and fail: that is not what
	// this test is about, so such a call only means "not yet".
	testwait.Until(t, waitLong, "s4 to answer (the forced Resolve reached gRPC)", func() bool {
		name, err := call(context.Background(), conn)
		return err == nil && name == "s4"
	})

	// The watch's older set arrives now.
	close(held.Release)
	wait(t, held.Resumed, "the resolver to handle the watch's older set")
	got := spread(t, conn, 30)
	t.Logf("calls after the watch's older set: %v", got)
	if got["s4"] == 0 {
		t.Errorf("s4 got none of 30 calls after the watch's older set: gRPC's addresses went back to [s1 s2 s3]")
	}
}
