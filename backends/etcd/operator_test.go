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

// TestFollowRegistryOutageBeforeTheWatch: an etcd that stops between
// FollowRegistry's first read and the moment its watch is open is
// reported unreachable (etcd's client does not return from opening a
// watch while etcd is away), then answering again once it is back, and
// the changes made after it are reported. etcd is stopped from apply,
// while FollowRegistry applies its first update, before it opens its
// watch.
func TestFollowRegistryOutageBeforeTheWatch(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	p1 := instance("payments", "p-1")
	register(t, b, p1)
	view := newBackend(t, testConfig(t, srv.Endpoints()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan discovery.RegistryUpdate, 256)
	done := make(chan error, 1)
	first := true
	go func() {
		done <- view.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
			if first {
				first = false
				if err := srv.Stop(); err != nil {
					t.Errorf("stopping etcd: %v", err)
				}
			}
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
	if u := next("the first Reset"); !u.Reset || u.Unreachable != nil || len(u.Services) != 1 ||
		len(u.Services[0].Instances) != 1 || !u.Services[0].Instances[0].Equal(p1) {
		t.Fatalf("first update %+v; want a Reset with payments/p-1 alone", u)
	}
	// etcd stopped while the first update was applied.
	if u := next("an update saying etcd does not answer"); !errors.Is(u.Unreachable, discovery.ErrUnavailable) || u.Reset || len(u.Services) != 0 {
		t.Fatalf("the update once etcd stopped = %+v; want Unreachable wrapping ErrUnavailable, and no set", u)
	}
	if err := srv.Restart(); err != nil {
		t.Fatalf("restarting etcd: %v", err)
	}
	// The registering Backend may write p-1's key again as etcd comes
	// back: an update of payments, with Unreachable or without.
	for {
		u := next("an update saying etcd answers again")
		if u.Reset || len(u.Services) > 1 || (len(u.Services) == 1 && u.Services[0].Service != "payments") {
			t.Fatalf("an update once etcd is back = %+v; want no Reset and no set but payments", u)
		}
		if u.Unreachable == nil {
			break
		}
	}
	// The watch, opened once etcd was back, reports the changes.
	p2 := instance("payments", "p-2")
	register(t, b, p2)
	for {
		u := next("payments with p-1 and p-2")
		if u.Unreachable != nil || u.Reset || len(u.Services) != 1 || u.Services[0].Service != "payments" {
			t.Fatalf("after p-2 registered: %+v; want payments whole, and etcd answering", u)
		}
		if len(u.Services) == 1 && slices.EqualFunc(u.Services[0].Instances, []discovery.LeasedInstance{{Instance: p1}, {Instance: p2}},
			func(a, b discovery.LeasedInstance) bool { return a.Equal(b.Instance) }) {
			break
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowRegistry after its ctx ended: %v; want context.Canceled", err)
	}
}
