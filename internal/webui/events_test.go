package webui_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/internal/webui"
)

var (
	p1 = discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:8080", Metadata: map[string]string{"zone": "a", "version": "1.4.2"}}
	p2 = discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:8080"}
)

// TestEventsForAScriptedChange: a stream opens with the whole state; then
// each change to the registry is exactly one event holding the whole new
// set of the service that changed, or the new status, numbered one after
// the other.
func TestEventsForAScriptedChange(t *testing.T) {
	// No rescan but the one a stream's opening triggers, so that every
	// event below comes from the watcher.
	f := newFixture(t, []discovery.Instance{p1}, webui.WithRescanInterval(time.Hour))
	s := f.openStream()

	const (
		one     = `{"id":"p-1","address":"10.0.0.1:8080","metadata":[["version","1.4.2"],["zone","a"]]}`
		two     = `{"id":"p-2","address":"10.0.0.2:8080","metadata":[]}`
		problem = `memory: watch \"payments\": memory: discovery: registry unavailable`
	)
	payments := func(instances ...string) string {
		return `{"services":[{"name":"payments","instances":[` + strings.Join(instances, ",") + `]}]}`
	}

	first := s.next(t)
	for !strings.Contains(first.data, `"p-1"`) {
		first = s.next(t)
	}
	if first.event == "state" {
		want := `{"registry":"memory test","status":{"loaded":true,"reachable":true},"services":[{"name":"payments","instances":[` + one + `]}],"leases":{}}`
		if first.data != want {
			t.Fatalf("first state:\n got %s\nwant %s", first.data, want)
		}
	} else if first.data != payments(one) {
		t.Fatalf("first set:\n got %s %s\nwant services %s", first.event, first.data, payments(one))
	}

	cases := []struct {
		name   string
		change func()
		event  string
		want   string
	}{
		{"register p-2", func() { f.register(p2) }, "services", payments(one, two)},
		{"deregister p-1", func() { f.deregister(p1) }, "services", payments(two)},
		{"outage", func() { f.store.SetAvailable(false) }, "status", `{"loaded":true,"reachable":false,"problem":"` + problem + `","since":`},
		{"registry back", func() { f.store.SetAvailable(true) }, "status", `{"loaded":true,"reachable":true}`},
		{"register p-1 again", func() { f.register(p1) }, "services", payments(one, two)},
	}
	last := first.id
	for _, c := range cases {
		c.change()
		ev := s.next(t)
		if !strings.HasPrefix(ev.data, c.want) || ev.event != c.event {
			t.Fatalf("%s:\n got %s %s\nwant %s %s", c.name, ev.event, ev.data, c.event, c.want)
		}
		if ev.id != last+1 {
			t.Errorf("%s: event id %d, want %d (one event per change)", c.name, ev.id, last+1)
		}
		last = ev.id
	}
}

// TestStreamEndsWhenClientLeaves: the stream's goroutine ends as soon as
// the browser goes away, and nothing of it is left.
func TestStreamEndsWhenClientLeaves(t *testing.T) {
	f := newFixture(t, []discovery.Instance{p1})
	// A first stream, so that the Handler's own goroutines (the follower
	// of payments) run before the count.
	warm := f.openStream()
	warm.nextMatching(t, `"p-1"`)
	warm.close()
	testwait.Until(t, waitTimeout, "the first stream to end", func() bool { return webui.Streams(f.h) == 0 })
	f.srv.Client().CloseIdleConnections()
	before := goleak.IgnoreCurrent()

	s := f.openStream()
	s.nextMatching(t, `"p-1"`)
	if n := webui.Streams(f.h); n != 1 {
		t.Fatalf("%d streams open, want 1", n)
	}
	s.close()
	testwait.Until(t, waitTimeout, "the stream to end", func() bool { return webui.Streams(f.h) == 0 })
	f.srv.Client().CloseIdleConnections()
	if err := goleak.Find(before); err != nil {
		t.Fatalf("goroutines left by a stream that ended: %v", err)
	}
}

// TestCloseEndsStreams: Close ends open streams and every goroutine of the
// Handler; the browser sees its stream end.
func TestCloseEndsStreams(t *testing.T) {
	f := newFixture(t, []discovery.Instance{p1, {Service: "orders", ID: "o-1", Address: "10.0.1.1:80"}})
	f.reg.add("orders")
	s := f.openStream()
	s.nextMatching(t, `"orders"`)
	if err := f.h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(waitTimeout):
		t.Fatal("the stream did not end on Close")
	}
}

// TestSlowClientIsCutOff: a browser that stops reading holds at most one
// pending state, and once a write to it stalls past the write timeout its
// stream ends.
func TestSlowClientIsCutOff(t *testing.T) {
	f := newFixture(t, []discovery.Instance{p1}, webui.WithWriteTimeout(200*time.Millisecond))
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10) // fill up sooner
	}
	fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", f.srv.Listener.Addr())
	// Read the headers, then nothing more.
	if _, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, waitTimeout, "the stream to open", func() bool { return webui.Streams(f.h) == 1 })
	// Big states, many of them: the connection's buffers fill up.
	big := strings.Repeat("x", 32<<10)
	deadline := time.Now().Add(waitTimeout)
	for i := 0; webui.Streams(f.h) == 1; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the stream of a client that does not read is still open after %d changes in %v", i, waitTimeout)
		}
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("big-%d", i%50), Address: "10.0.0.9:80",
			Metadata: map[string]string{"blob": fmt.Sprint(i, big)}}
		f.register(in)
	}
}

// TestFullEndsOldestStream: clients that open the event stream and never
// read it cannot lock browsers out: with every stream taken, a new one is
// served and the oldest is ended (a browser reconnects).
func TestFullEndsOldestStream(t *testing.T) {
	const limit = 4
	f := newFixture(t, []discovery.Instance{p1}, webui.WithMaxClients(limit))
	var idle []net.Conn
	for i := range limit {
		conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: %s\r\n\r\n", f.srv.Listener.Addr())
		idle = append(idle, conn)
		testwait.Until(t, waitTimeout, "the idle stream to open", func() bool { return webui.Streams(f.h) == i+1 })
	}

	s := f.openStream() // before the fix: 503 Service Unavailable
	s.nextMatching(t, `"p-1"`)
	if n := webui.Streams(f.h); n != limit {
		t.Errorf("%d streams open, want %d", n, limit)
	}
	// The oldest idle client's stream ended: the server closed it.
	_ = idle[0].SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.Copy(io.Discard, idle[0]); err != nil { // EOF: the stream's connection closed
		t.Errorf("the oldest idle stream was not ended: %v", err)
	}
	// A browser that comes back takes the next oldest.
	again := f.openStream()
	again.nextMatching(t, `"p-1"`)
	_ = idle[1].SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.Copy(io.Discard, idle[1]); err != nil {
		t.Errorf("the second idle stream was not ended: %v", err)
	}
	f.register(p2)
	s.nextMatching(t, `"p-2"`)
}

// TestNewServiceAppears: a service registered after the page opened is
// found by the rescan and followed.
func TestNewServiceAppears(t *testing.T) {
	f := newFixture(t, []discovery.Instance{p1}, webui.WithRescanInterval(20*time.Millisecond))
	s := f.openStream()
	s.nextMatching(t, `"p-1"`)
	f.register(discovery.Instance{Service: "orders", ID: "o-1", Address: "10.0.1.1:80"})
	s.nextMatching(t, `{"name":"orders","instances":[{"id":"o-1"`)
	// Once empty it leaves the page.
	f.deregister(discovery.Instance{Service: "orders", ID: "o-1"})
	s.nextMatching(t, `{"name":"orders","instances":[]}`)
}

// TestTTL: the time left on leases is sent in milliseconds, counted from
// the read, apart from the instances.
func TestTTL(t *testing.T) {
	f := newFixture(t, []discovery.Instance{p1})
	f.reg.setTTL(10 * time.Second)
	s := f.openStream()
	f.register(p2) // read after a change
	var p page
	var left time.Duration
	p.follow(t, s, "the TTL of p-2", func() bool {
		var ok bool
		left, ok = p.ttl("payments", "p-2", time.Now())
		return ok
	})
	if left <= 0 || left > 10*time.Second {
		t.Fatalf("p-2's TTL shown as %v, want in (0, 10s]", left)
	}
}

// TestOptions: invalid options are errors from New.
func TestOptions(t *testing.T) {
	cases := []webui.Option{
		webui.WithRescanInterval(0),
		webui.WithRequestTimeout(-time.Second),
		webui.WithMaxClients(0),
		webui.WithWriteTimeout(0),
		webui.WithHeartbeat(0),
	}
	for i, opt := range cases {
		if _, err := webui.New(&memRegistry{}, opt); !errors.Is(err, webui.ErrInvalidOption) {
			t.Errorf("case %d: got %v, want ErrInvalidOption", i, err)
		}
	}
	if _, err := webui.New(nil); !errors.Is(err, webui.ErrInvalidOption) {
		t.Errorf("nil registry: got %v, want ErrInvalidOption", err)
	}
}

// TestTTLRefreshedBeforeALeaseRunsOut: with no change at all, the TTLs of
// a service are read again (and sent, as they differ from the countdown
// by a second) before its soonest lease would run out, so a lease that is
// being renewed does not count down to "not read recently" on the page.
func TestTTLRefreshedBeforeALeaseRunsOut(t *testing.T) {
	f := newFixture(t, nil)
	f.reg.setTTL(time.Second)
	f.register(p1)
	s := f.openStream()
	var p page
	p.follow(t, s, "p-1's TTL", func() bool { _, ok := p.ttl("payments", "p-1", time.Now()); return ok })
	start := time.Now()
	next := s.next(t) // no change was made: a refresh
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("TTLs read again after %v; want after 1 s, the least interval", took)
	}
	p.apply(t, next)
	if left, ok := p.ttl("payments", "p-1", time.Now()); next.event != "leases" || !ok || left < 500*time.Millisecond {
		t.Errorf("refresh event %s %s: p-1's TTL shown as %v", next.event, next.data, left)
	}
}

// TestEmptyServiceFollowerEnds: the follower of a service that has had no
// instances, and has not been listed, for the grace period ends.
func TestEmptyServiceFollowerEnds(t *testing.T) {
	webui.SetEmptyGrace(t, 50*time.Millisecond)
	f := newFixture(t, []discovery.Instance{p1}, webui.WithRescanInterval(10*time.Millisecond))
	s := f.openStream()
	o1 := discovery.Instance{Service: "orders", ID: "o-1", Address: "10.0.1.1:80"}
	f.register(o1)
	s.nextMatching(t, `"orders"`)
	if n := webui.Followed(f.h); n != 2 {
		t.Fatalf("%d services followed, want 2", n)
	}
	f.deregister(o1)
	testwait.Until(t, waitTimeout, "the follower of orders to end", func() bool { return webui.Followed(f.h) == 1 })
	// It comes back as a new service.
	f.register(o1)
	s.nextMatching(t, `"orders"`)
}

// finderRegistry is a memRegistry that is also a ServiceFinder: it reports
// the services with instances, then each name sent on feed.
type finderRegistry struct {
	*memRegistry
	feed     chan []string
	listings chan struct{} // gets a value for each call of Services
}

func (r *finderRegistry) Services(ctx context.Context) ([]webui.ServiceSummary, error) {
	r.listings <- struct{}{}
	return r.memRegistry.Services(ctx)
}

func (r *finderRegistry) FindServices(ctx context.Context, found func([]string)) error {
	list, err := r.memRegistry.Services(ctx)
	if err != nil {
		return err
	}
	names := []string{}
	for _, s := range list {
		names = append(names, s.Service)
	}
	found(names)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case names := <-r.feed:
			found(names)
		}
	}
}

// TestServiceFinder: with a ServiceFinder the view learns of new services
// from it and never lists the services.
func TestServiceFinder(t *testing.T) {
	store := memory.NewStore()
	b, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	mem := &memRegistry{b: b}
	reg := &finderRegistry{memRegistry: mem, feed: make(chan []string), listings: make(chan struct{}, 100)}
	f := &fixture{t: t, store: store, b: b, reg: mem}
	f.register(p1)
	f.h, err = webui.New(reg, webui.WithName("finder"), webui.WithLogger(testlog.New(t)), webui.WithRescanInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(func() {
		_ = f.h.Close()
		f.srv.Close()
	})

	s := f.openStream()
	s.nextMatching(t, `"p-1"`)
	f.register(discovery.Instance{Service: "orders", ID: "o-1", Address: "10.0.1.1:80"})
	reg.feed <- []string{"orders"}
	s.nextMatching(t, `"o-1"`)
	if n := len(reg.listings); n != 0 {
		t.Errorf("Services was called %d times; want never, with a ServiceFinder", n)
	}
}

// TestServiceFinderUnreachable: until the finder has read the registry,
// its error makes the registry unreachable; it is called again.
func TestServiceFinderUnreachable(t *testing.T) {
	store := memory.NewStore()
	b, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	mem := &memRegistry{b: b}
	mem.add("payments")
	store.SetAvailable(false)
	reg := &finderRegistry{memRegistry: mem, feed: make(chan []string), listings: make(chan struct{}, 100)}
	h, err := webui.New(reg, webui.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		_ = h.Close()
		srv.Close()
	})
	f := &fixture{t: t, store: store, b: b, reg: mem, h: h, srv: srv}
	s := f.openStream()
	s.nextMatching(t, `"reachable":false,"problem":"memory: resolve \"payments\": memory: discovery: registry unavailable"`)
	store.SetAvailable(true)
	s.nextMatching(t, `"reachable":true`)
}

// TestTTLsNotReadWhileUnwatchedAreNotShown: the TTLs are read only while a
// page is open. A page that opens after the leases as last read have run
// out (they were renewed meanwhile, unread) must not count down from them:
// it shows them as not read until they are.
func TestTTLsNotReadWhileUnwatchedAreNotShown(t *testing.T) {
	o1 := discovery.Instance{Service: "orders", ID: "o-1", Address: "10.0.0.3:8080"}
	const ttl = time.Second
	f := newFixture(t, nil)
	f.reg.setTTL(ttl)
	f.register(p1)
	f.register(o1)

	var p page
	bothRead := func() bool {
		_, a := p.ttl("payments", "p-1", time.Now())
		_, b := p.ttl("orders", "o-1", time.Now())
		return a && b
	}
	s := f.openStream()
	p.follow(t, s, "both TTLs", bothRead)
	read := time.Now()
	s.close()
	testwait.Until(t, waitTimeout, "the stream closed", func() bool { return webui.Streams(f.h) == 0 })
	// No page is open: the leases as read run out (the registry renews
	// them, unread), and their refresh comes due unwatched.
	testwait.Until(t, waitTimeout, "the leases as read to run out", func() bool { return time.Since(read) > 3*ttl })

	before := f.reg.instancesCalls()
	s = f.openStream()
	p = page{}
	for {
		ev := s.next(t)
		p.apply(t, ev)
		reread := f.reg.instancesCalls()-before >= 2 // both services read again
		for _, id := range [][2]string{{"payments", "p-1"}, {"orders", "o-1"}} {
			if left, ok := p.ttl(id[0], id[1], time.Now()); ok && (left < -100*time.Millisecond || left > ttl) {
				t.Fatalf("event %d shows %s with TTL %v; want it not read or read again (0..%v]:\n%s", ev.id, id[1], left, ttl, ev.data)
			}
		}
		if reread && bothRead() {
			return
		}
	}
}

// TestMaxFollowed: on a Registry without a registry-wide watch, the view
// follows at most WithMaxFollowed services, one watch each, and says on
// the page how many it leaves out.
func TestMaxFollowed(t *testing.T) {
	f := newFixture(t, nil, webui.WithMaxFollowed(2), webui.WithRescanInterval(20*time.Millisecond))
	for _, svc := range []string{"a", "b", "c"} {
		f.register(discovery.Instance{Service: svc, ID: svc + "-1", Address: "10.0.0.1:80"})
	}
	s := f.openStream()
	var p page
	p.follow(t, s, "two services and a note", func() bool {
		return len(p.Services) == 2 && strings.Contains(p.Status.Note, "showing 2 services, not 1 more")
	})
	if n := webui.Followed(f.h); n != 2 {
		t.Errorf("%d services followed, want 2", n)
	}
}
