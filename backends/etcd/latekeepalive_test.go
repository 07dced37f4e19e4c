package etcd

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// A keep-alive whose answer comes after the time it counted on (here a
// lease read with 300 ms left, over a link whose round trip is 600 ms),
// on the stream it was sent on, must not end the keep-alive: it reports
// the lease unconfirmed when the time runs out (the status must not say
// registered), then confirmed when the answer says etcd has the lease,
// and goes on. Before, it ended, and the keeper asked for the lease again
// (refused, a raft proposal) and read it again: two requests that a
// loaded cluster answers late again (issue #21: 201 of 200 processes fell
// back this way in a loaded restart). Within its grace and without an
// answer, or with the stream gone, it still ends.
func TestLateKeepAliveAnswerConfirmsTheLease(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{proxy.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ttl = 5 * time.Second
	g, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	proxy.SetLatency(300 * time.Millisecond)

	var expired, confirmed atomic.Int32
	var wg sync.WaitGroup
	kctx, kcancel := context.WithCancel(ctx)
	var facts leaseFacts
	ka := startKeepAlive(kctx, pb.NewLeaseClient(cli.ActiveConnection()), g.ID, ttl, 300*time.Millisecond, time.Now(), false,
		func() { expired.Add(1) }, 5*time.Second, func() { confirmed.Add(1) }, hclog.NewNullLogger(), &wg, &facts)
	defer func() { kcancel(); wg.Wait() }()

	testwait.Until(t, 10*time.Second, "the late answer confirms the lease", func() bool { return confirmed.Load() == 1 })
	select {
	case <-ka.done:
		t.Fatalf("keep-alive ended (%v) although etcd answered that it has the lease", ka.err)
	default:
	}
	if n := expired.Load(); n != 1 {
		t.Errorf("expired called %d times; want 1, when the 300 ms ran out", n)
	}
	// It goes on renewing: the lease outlives its TTL.
	proxy.SetLatency(0)
	time.Sleep(ttl + time.Second)
	resp, err := cli.TimeToLive(ctx, g.ID)
	if err != nil || resp.TTL <= 0 {
		t.Fatalf("lease after %v: %v, %v; want it kept alive", ttl+time.Second, resp, err)
	}

	// Past the TTL with the stream gone, it ends: etcd may have been
	// restarted or restored meanwhile.
	proxy.Reject()
	select {
	case <-ka.done:
	case <-time.After(ttl + 10*time.Second):
		t.Fatal("keep-alive still running with etcd unreachable for longer than its TTL")
	}
	if ka.err != errKeepAliveTimeout {
		t.Errorf("keep-alive ended with %v; want %v", ka.err, errKeepAliveTimeout)
	}
}
