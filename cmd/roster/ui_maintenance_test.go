package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestWebViewMergesMaintenance: the web view's one watch over the etcd
// prefix (the backend's discovery.OperatorView.FollowRegistry) shows an instance under an operator's override as maintenance
// with the reason, an instance registered under its service's override
// too, and the instances serving again once the overrides are cleared;
// the override keys never show as instances.
func TestWebViewMergesMaintenance(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	newBackend := func() *etcd.Backend {
		b, err := etcd.New(etcd.Config{Endpoints: srv.Endpoints(), Logger: testlog.New(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	owner, operator := newBackend(), newBackend()
	ctx := t.Context()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8081"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "127.0.0.1:8082"}
	if err := owner.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if err := operator.SetMaintenance(ctx, p1.Key(), "disk", 0); err != nil {
		t.Fatal(err)
	}

	// What the page would hold: the view's updates applied in order.
	var mu sync.Mutex
	shown := map[discovery.Key]discovery.Instance{}
	view := newBackend()
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- view.FollowRegistry(fctx, func(u discovery.RegistryUpdate) {
			mu.Lock()
			defer mu.Unlock()
			if u.Reset {
				clear(shown)
			}
			for _, set := range u.Services {
				for k := range shown {
					if k.Service == set.Service {
						delete(shown, k)
					}
				}
				for _, in := range set.Instances {
					shown[in.Key()] = in.Instance
				}
			}
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	text := func() string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, k := range slices.SortedFunc(maps.Keys(shown), func(a, b discovery.Key) int { return strings.Compare(a.String(), b.String()) }) {
			in := shown[k]
			out = append(out, fmt.Sprintf("%s %s %q", k, in.Condition, in.Reason))
		}
		return strings.Join(out, "; ")
	}
	wait := func(want string) {
		t.Helper()
		testwait.Until(t, 10*time.Second, want, func() bool { return text() == want })
	}

	wait(`payments/p-1 maintenance "disk"`)
	if err := operator.SetMaintenance(ctx, discovery.Key{Service: "payments"}, "evacuation", 0); err != nil {
		t.Fatal(err)
	}
	if err := owner.Register(ctx, p2); err != nil {
		t.Fatal(err)
	}
	wait(`payments/p-1 maintenance "disk"; payments/p-2 maintenance "evacuation"`)
	if err := operator.ClearMaintenance(ctx, p1.Key()); err != nil {
		t.Fatal(err)
	}
	wait(`payments/p-1 maintenance "evacuation"; payments/p-2 maintenance "evacuation"`)
	if err := operator.ClearMaintenance(ctx, discovery.Key{Service: "payments"}); err != nil {
		t.Fatal(err)
	}
	wait(`payments/p-1 serving ""; payments/p-2 serving ""`)
}
