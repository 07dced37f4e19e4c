package webui_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/internal/webui"
)

var (
	p1 = discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:8080", Metadata: map[string]string{"zone": "a", "version": "1.4.2"}}
	p2 = discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:8080",
		Condition: discovery.ConditionDraining, Reason: "deploy 42", Weight: 30, Zone: "eu-west-1a"}
)

// TestEventsForAScriptedChange: a stream opens with the whole state; then
// each change to the registry is exactly one event holding the whole new
// set of the service that changed, or the new status, numbered one after
// the other.
func TestEventsForAScriptedChange(t *testing.T) {
	// Every event below comes from the one FollowRegistry.
	f := newFixture(t, []discovery.Instance{p1})
	s := f.openStream()

	const (
		one     = `{"id":"p-1","address":"10.0.0.1:8080","metadata":[["version","1.4.2"],["zone","a"]],"weight":100}`
		two     = `{"id":"p-2","address":"10.0.0.2:8080","metadata":[],"condition":"draining","reason":"deploy 42","weight":30,"zone":"eu-west-1a"}`
		problem = `memory: follow the registry: memory: discovery: registry unavailable`
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

// TestNewServiceAppears: a service registered after the page opened
// comes from the same FollowRegistry, and leaves the page once empty.
func TestNewServiceAppears(t *testing.T) {
	f := newFixture(t, []discovery.Instance{p1})
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
		webui.WithRequestTimeout(-time.Second),
		webui.WithMaxClients(0),
		webui.WithWriteTimeout(0),
		webui.WithHeartbeat(0),
	}
	for i, opt := range cases {
		if _, err := webui.New(&leasedView{}, opt); !errors.Is(err, webui.ErrInvalidOption) {
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

	before := f.reg.leaseReads()
	s = f.openStream()
	p = page{}
	for {
		ev := s.next(t)
		p.apply(t, ev)
		reread := f.reg.leaseReads()-before >= 2 // both leases read again
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
