package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
)

// operatorHarness gives the subtest a prefix of its own on one etcd
// server; every handle is a Backend with its own client.
type operatorHarness struct {
	t      *testing.T
	srv    *etcdtest.Server
	prefix string
}

func (h *operatorHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	cfg := testConfig(h.t, h.srv.Endpoints())
	cfg.Prefix = h.prefix
	return etcd.New(cfg)
}

func (h *operatorHarness) Close() {}

func TestOperatorView(t *testing.T) {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	discoverytest.RunOperatorView(t, func(_ context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &operatorHarness{t: t, srv: srv, prefix: fmt.Sprintf("/operator/%d", n.Add(1))}, nil
	})
}

// followWait bounds each wait for an update: generous on a busy machine.
const followWait = 20 * time.Second

// TestFollowRegistry: FollowRegistry reports each instance with its lease
// in hex, passes over reserved keys (a remainder starting with '~') and
// what is not roster's, reports a change of a service as its whole set,
// reports etcd unreachable while it is stopped and reachable once it is
// back, and ends with ErrClosed when the Backend closes.
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

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if u := next("etcd unreachable"); !errors.Is(u.Unreachable, discovery.ErrUnavailable) {
		t.Fatalf("after etcd stopped: %+v; want Unreachable wrapping ErrUnavailable", u)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for {
		if u := next("etcd reachable again"); u.Unreachable == nil {
			break
		}
	}
	if err := view.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("FollowRegistry after Close: %v; want ErrClosed", err)
		}
	case <-time.After(followWait):
		t.Fatal("FollowRegistry did not return when the Backend closed")
	}
}
