package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
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
	f := follow(t, view, nil)
	next := f.next
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
	f.stop()
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
	first := true
	f := follow(t, view, func() {
		if first {
			first = false
			if err := srv.Stop(); err != nil {
				t.Errorf("stopping etcd: %v", err)
			}
		}
	})
	next := f.next
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
	f.stop()
}

// following is a FollowRegistry running until stop or the test's end.
type following struct {
	t       *testing.T
	cancel  context.CancelFunc
	updates chan discovery.RegistryUpdate
	done    chan error
}

// follow runs view.FollowRegistry, calling during (if not nil) in apply
// before each update is handed on, a copy, to next.
func follow(t *testing.T, view *etcd.Backend, during func()) *following {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &following{t: t, cancel: cancel, updates: make(chan discovery.RegistryUpdate, 256), done: make(chan error, 1)}
	go func() {
		f.done <- view.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
			if during != nil {
				during()
			}
			c := discovery.RegistryUpdate{Reset: u.Reset, Unreachable: u.Unreachable}
			for _, s := range u.Services {
				c.Services = append(c.Services, discovery.ServiceSet{Service: s.Service, Instances: slices.Clone(s.Instances)})
			}
			f.updates <- c
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

// next returns the next update, or fails the test saying it wanted what.
func (f *following) next(what string) discovery.RegistryUpdate {
	f.t.Helper()
	select {
	case u := <-f.updates:
		return u
	case err := <-f.done:
		f.done <- err // for the cleanup
		f.t.Fatalf("FollowRegistry returned %v; want %s", err, what)
	case <-time.After(followWait):
		f.t.Fatalf("no update within %v: want %s", followWait, what)
	}
	return discovery.RegistryUpdate{}
}

// stop ends FollowRegistry's context and checks that it returns
// context.Canceled.
func (f *following) stop() {
	f.t.Helper()
	f.cancel()
	err := <-f.done
	f.done <- err // for the cleanup
	if !errors.Is(err, context.Canceled) {
		f.t.Errorf("FollowRegistry after its ctx ended: %v; want context.Canceled", err)
	}
}
