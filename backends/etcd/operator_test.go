package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
)

// TestOperatorView runs discoverytest's operator-view subtests, each on a
// prefix of its own (the conformance harness).
func TestOperatorView(t *testing.T) {
	discoverytest.RunOperatorView(t, harnesses(t, "operator"))
}

// followWait bounds each wait for an update: generous on a busy machine.
const followWait = 20 * time.Second

// TestFollowRegistry: FollowRegistry reports each instance with its lease
// in hex, passes over reserved keys (a remainder starting with '~') and
// what is not roster's, and reports a change of a service as its whole
// set. (The outage and Close are discoverytest's
// FaultFollowRegistryReportsOutage and OperatorView.)
func TestFollowRegistry(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	p1 := instance("payments", "p-1")
	register(t, b, p1)
	cli := etcdtest.Client(t, srv)
	putKeys(t, cli, map[string]string{
		"/roster/services/payments/~maint/p-1": `{"reason":"reserved: not an instance"}`,
		"/roster/services/odd":                 `not roster's`,
	})
	view := newBackend(t, testConfig(t, srv.Endpoints()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan discovery.RegistryUpdate, 256)
	done := make(chan error, 1)
	go func() {
		done <- view.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
			c := discovery.RegistryUpdate{Reset: u.Reset, Unreachable: u.Unreachable}
			for _, s := range u.Services {
				c.Services = append(c.Services, discovery.ServiceSet{Service: s.Service, Instances: slices.Clone(s.Instances)})
			}
			updates <- c
		})
	}()
	next := func(what string) discovery.RegistryUpdate {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case err := <-done:
			t.Fatalf("FollowRegistry returned %v; want %s", err, what)
		case <-time.After(followWait):
			t.Fatalf("no update within %v: want %s", followWait, what)
		}
		return discovery.RegistryUpdate{}
	}
	lease := fmt.Sprintf("%x", int64(b.Lease()))
	u := next("the first Reset")
	if !u.Reset || u.Unreachable != nil || len(u.Services) != 1 || len(u.Services[0].Instances) != 1 ||
		!u.Services[0].Instances[0].Equal(p1) || u.Services[0].Instances[0].Lease != lease {
		t.Fatalf("first update %+v; want a Reset with payments/p-1 alone under lease %s", u, lease)
	}
	p2 := instance("payments", "p-2")
	p2.Condition, p2.Reason = discovery.ConditionDraining, "leaving"
	register(t, b, p2)
	if u := next("payments with p-2"); u.Reset || len(u.Services) != 1 || len(u.Services[0].Instances) != 2 || !u.Services[0].Instances[1].Equal(p2) {
		t.Fatalf("after p-2 registered: %+v; want payments whole, p-2 draining", u)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowRegistry after its ctx ended: %v; want context.Canceled", err)
	}
}
