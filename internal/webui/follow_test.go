package webui_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/webui"
)

// scriptedFollower is a discovery.OperatorView whose registry is what the
// test sends on updates, and whose leases have the time left the test
// sets. It implements FollowRegistry and ReadLease alone: the view must
// call nothing else (the nil OperatorView it embeds would panic). (The
// real ones are tested in cmd/roster: TestUIAtScale, TestDevUI,
// TestUIInBrowser.)
type scriptedFollower struct {
	discovery.OperatorView
	updates chan discovery.RegistryUpdate

	mu    sync.Mutex
	left  map[string]time.Duration // absent: not found
	reads map[string]int
}

func (f *scriptedFollower) FollowRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-f.updates:
			apply(u)
		}
	}
}

func (f *scriptedFollower) ReadLease(_ context.Context, lease string) (discovery.LeaseInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads[lease]++
	left, ok := f.left[lease]
	return discovery.LeaseInfo{Found: ok, Left: left, Granted: 15 * time.Second}, nil
}

func (f *scriptedFollower) readsOf() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.reads))
	for k, v := range f.reads {
		out[k] = v
	}
	return out
}

// TestLeasesReadPerLease: the view reads each distinct lease, not each
// service or instance, only while a page is open; a lease read as gone
// shows as expired; every set comes from FollowRegistry alone.
func TestLeasesReadPerLease(t *testing.T) {
	f := &scriptedFollower{
		updates: make(chan discovery.RegistryUpdate),
		left:    map[string]time.Duration{"a": 12 * time.Second},
		reads:   map[string]int{},
	}
	h, err := webui.New(f, webui.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		_ = h.Close()
		srv.Close()
	})
	fx := &fixture{t: t, h: h, srv: srv}
	in := func(service, id, lease string) discovery.LeasedInstance {
		return discovery.LeasedInstance{Instance: discovery.Instance{Service: service, ID: id, Address: "10.0.0.1:80"}, Lease: lease}
	}
	// Three services, four instances, two leases (two processes).
	f.updates <- discovery.RegistryUpdate{Reset: true, Services: []discovery.ServiceSet{
		{Service: "orders", Instances: []discovery.LeasedInstance{in("orders", "o-1", "a"), in("orders", "o-2", "b")}},
		{Service: "payments", Instances: []discovery.LeasedInstance{in("payments", "p-1", "a")}},
		{Service: "search", Instances: []discovery.LeasedInstance{in("search", "s-1", "a")}},
	}}
	if got := f.readsOf(); len(got) != 0 {
		t.Errorf("leases read with no page open: %v", got)
	}
	s := fx.openStream()
	var p page
	p.follow(t, s, "every lease read", func() bool { return len(p.Leases) == 2 })
	if left, ok := p.ttl("payments", "p-1", time.Now()); !ok || left <= 10*time.Second || left > 12*time.Second {
		t.Errorf("p-1's TTL shown as %v (%v), want about 12s", left, ok)
	}
	if l := p.Leases["b"]; l == nil || !l.Expired {
		t.Errorf("lease b, not found, shown as %+v; want expired", l)
	}
	got := f.readsOf()
	if len(got) != 2 || got["a"] < 1 || got["b"] < 1 {
		t.Errorf("reads by lease %v, want leases a and b only", got)
	}
	// A change of one service sends that service alone.
	f.updates <- discovery.RegistryUpdate{Services: []discovery.ServiceSet{
		{Service: "orders", Instances: []discovery.LeasedInstance{in("orders", "o-1", "a")}},
	}}
	ev := s.nextMatching(t, `"orders"`)
	if ev.event != "services" || ev.data != `{"services":[{"name":"orders","instances":[{"id":"o-1","address":"10.0.0.1:80","metadata":[],"weight":100,"lease":"a"}]}]}` {
		t.Errorf("after o-2 left: %s %s", ev.event, ev.data)
	}
	// Unreachable, then back.
	f.updates <- discovery.RegistryUpdate{Unreachable: discovery.ErrUnavailable}
	s.nextMatching(t, `"reachable":false`)
	f.updates <- discovery.RegistryUpdate{}
	s.nextMatching(t, `"reachable":true`)
	if n := webui.Followed(h); n != 3 {
		t.Errorf("%d services known, want 3", n)
	}
}
