package grpcresolver_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// TestMaintenanceLeavesPicksThroughEtcd: real gRPC servers s1 and s2
// registered in a real etcd, a client resolving through another Backend,
// and an operator's third Backend. Once the operator's override of s2 is
// visible to a watcher, no call reaches s2, while its process keeps it
// registered (and re-registers it); once cleared, s2 answers again. No
// call fails throughout.
func TestMaintenanceLeavesPicksThroughEtcd(t *testing.T) {
	t.Parallel()
	newEtcd := etcdBackends(t, etcd.Config{
		TTL:            5 * time.Second,
		Retry:          retry.Policy{Base: 100 * time.Millisecond, Max: time.Second},
		RequestTimeout: 2 * time.Second,
		ReconnectDelay: 200 * time.Millisecond,
	})
	servers, client, operator := newEtcd(), newEtcd(), newEtcd()
	ctx := t.Context()
	s1, s2 := startServer(t, "s1"), startServer(t, "s2")
	for _, in := range []discovery.Instance{s1, s2} {
		if err := servers.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	conn, _ := dialThrough(t, client)
	waitAnswering(t, conn, 2)

	// A watcher of its own tells when the override is visible.
	w, err := client.Watch(ctx, service)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	visible := func(c discovery.Condition) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, waitLong)
		defer cancel()
		for {
			set, err := w.Next(wctx)
			if err != nil {
				t.Fatalf("waiting for s2 %v: %v", c, err)
			}
			if i := slices.IndexFunc(set, func(in discovery.Instance) bool { return in.ID == "s2" }); i >= 0 && set[i].Condition == c {
				return
			}
		}
	}

	start := time.Now()
	if err := operator.SetMaintenance(ctx, s2.Key(), "kernel upgrade", 0); err != nil {
		t.Fatal(err)
	}
	visible(discovery.ConditionMaintenance)
	t.Logf("the override was visible to a watcher %v after SetMaintenance began", time.Since(start))
	// gRPC takes the new picker a moment after the watcher saw the set:
	// wait until s1 alone answers 20 calls in a row, then count.
	run := 0
	testwait.Until(t, waitLong, "s1 alone answering 20 calls in a row", func() bool {
		if mustCall(t, conn) == "s1" {
			run++
		} else {
			run = 0
		}
		return run >= 20
	})
	t.Logf("s1 alone answered 20 calls in a row %v after SetMaintenance began", time.Since(start))
	// The process re-registers its instance (a restart, a condition
	// change): the override holds.
	if err := servers.Register(ctx, s2); err != nil {
		t.Fatal(err)
	}
	got := spread(t, conn, 100)
	if got["s2"] != 0 || got["s1"] != 100 {
		t.Errorf("calls under s2's override: %v; want all 100 on s1", got)
	}
	set, err := client.Resolve(ctx, service)
	if err != nil || len(set) != 2 || set[1].Condition != discovery.ConditionMaintenance || set[1].Reason != "kernel upgrade" {
		t.Errorf("Resolve under the override = %v, %v; want s2 in maintenance, \"kernel upgrade\"", set, err)
	}

	if err := operator.ClearMaintenance(ctx, s2.Key()); err != nil {
		t.Fatal(err)
	}
	visible(discovery.ConditionServing)
	waitAnswering(t, conn, 2)
}
