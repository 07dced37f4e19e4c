package grpcresolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// TestClientThroughEtcdRestart runs real gRPC servers registered in a real
// etcd and a client resolving through another etcd Backend: calls keep
// working while etcd is down, and instances registered after it is back
// receive calls.
func TestClientThroughEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	newEtcd := etcdBackendsOn(t, srv, etcd.Config{
		TTL:            5 * time.Second,
		Retry:          retry.Policy{Base: 100 * time.Millisecond, Max: time.Second},
		RequestTimeout: time.Second,
		ReconnectDelay: 200 * time.Millisecond,
	})
	servers, client := newEtcd(), newEtcd()
	ctx := context.Background()
	for _, name := range []string{"s1", "s2"} {
		if err := servers.Register(ctx, startServer(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	conn, _ := dialThrough(t, client)
	answered := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			name, err := call(ctx, conn)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			got[name]++
		}
		return got
	}
	testwait.Until(t, waitLong, "both servers answer", func() bool { return len(answered(10)) == 2 })

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := answered(10); got["s1"] == 0 || got["s2"] == 0 {
		t.Errorf("with etcd down, calls went to %v; want both servers still used", got)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := servers.Register(ctx, startServer(t, "s3")); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, waitLong, "the server registered after the restart answers", func() bool { return answered(15)["s3"] > 0 })
}
