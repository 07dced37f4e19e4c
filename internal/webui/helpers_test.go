package webui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/webui"
)

// waitTimeout bounds every wait for something that must happen; it is
// generous for a loaded 2-core machine.
const waitTimeout = 10 * time.Second

// memRegistry is a webui.Registry over the memory backend. Services lists
// the services named by add that have instances; ttl, when set, is every
// instance's TTL.
type memRegistry struct {
	b *memory.Backend

	mu    sync.Mutex
	names []string
	ttl   time.Duration
	calls int // of Instances
}

// instancesCalls returns how many times Instances was called.
func (r *memRegistry) instancesCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *memRegistry) setTTL(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ttl = d
}

func (r *memRegistry) add(names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if !slices.Contains(r.names, n) {
			r.names = append(r.names, n)
		}
	}
	slices.Sort(r.names)
}

func (r *memRegistry) Services(ctx context.Context) ([]webui.ServiceSummary, error) {
	r.mu.Lock()
	names := slices.Clone(r.names)
	r.mu.Unlock()
	var list []webui.ServiceSummary
	for _, n := range names {
		set, err := r.b.Resolve(ctx, n)
		if err != nil {
			return nil, err
		}
		if len(set) > 0 {
			list = append(list, webui.ServiceSummary{Service: n, Instances: len(set)})
		}
	}
	return list, nil
}

func (r *memRegistry) Instances(ctx context.Context, service string) ([]webui.InstanceInfo, error) {
	set, err := r.b.Resolve(ctx, service)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	ttl := r.ttl
	r.calls++
	r.mu.Unlock()
	list := make([]webui.InstanceInfo, 0, len(set))
	for _, in := range set {
		list = append(list, webui.InstanceInfo{Instance: in, HasTTL: ttl != 0, TTL: ttl})
	}
	return list, nil
}

func (r *memRegistry) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	return r.b.Watch(ctx, service)
}

// fixture is a memory registry, a Handler on it and an HTTP server.
type fixture struct {
	t     *testing.T
	store *memory.Store
	b     *memory.Backend
	reg   *memRegistry
	h     *webui.Handler
	srv   *httptest.Server
}

// newFixture starts a memory registry holding the instances in, a Handler
// with opts and a server; all are closed when the test ends.
func newFixture(t *testing.T, in []discovery.Instance, opts ...webui.Option) *fixture {
	t.Helper()
	store := memory.NewStore()
	b, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	reg := &memRegistry{b: b}
	f := &fixture{t: t, store: store, b: b, reg: reg}
	for _, i := range in {
		f.register(i)
	}
	opts = append([]webui.Option{webui.WithName("memory test"), webui.WithLogger(testlog.New(t))}, opts...)
	f.h, err = webui.New(reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(func() {
		_ = f.h.Close() // ends the streams, so that Close of the server does not wait
		f.srv.Close()
	})
	return f
}

func (f *fixture) register(in discovery.Instance) {
	f.t.Helper()
	f.reg.add(in.Service)
	if err := f.b.Register(context.Background(), in); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) deregister(in discovery.Instance) {
	f.t.Helper()
	if err := f.b.Deregister(context.Background(), in); err != nil {
		f.t.Fatal(err)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	id    uint64
	event string
	data  string
}

// stream is an open event stream, read by a goroutine of its own into
// events until the stream ends (then events is closed).
type stream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
	done   chan struct{}
}

// openStream opens /events; the stream is closed when the test ends.
func (f *fixture) openStream() *stream {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		f.t.Fatalf("GET /events: %s", resp.Status)
	}
	s := &stream{resp: resp, cancel: cancel, events: make(chan sseEvent, 100), done: make(chan struct{})}
	go s.read()
	f.t.Cleanup(s.close)
	return s
}

func (s *stream) read() {
	defer close(s.done)
	defer close(s.events)
	sc := bufio.NewScanner(s.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if ev.event != "" || ev.data != "" {
				s.events <- ev
			}
			ev = sseEvent{}
		case field == "id":
			ev.id, _ = strconv.ParseUint(value, 10, 64)
		case field == "event":
			ev.event = value
		case field == "data":
			ev.data += value
		}
	}
}

// close ends the stream from the client's side and waits for its reader.
func (s *stream) close() {
	s.cancel()
	_, _ = io.Copy(io.Discard, s.resp.Body)
	_ = s.resp.Body.Close()
	<-s.done
}

// next returns the next event, failing the test if none comes in time.
func (s *stream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("no event within %v", waitTimeout)
		return sseEvent{}
	}
}

// nextMatching returns the first event whose data contains want.
func (s *stream) nextMatching(t *testing.T, want string) sseEvent {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		ev := s.next(t)
		if strings.Contains(ev.data, want) {
			return ev
		}
	}
	t.Fatalf("no event holding %s within %v", want, waitTimeout)
	return sseEvent{}
}

// page is what a page knows, built from the events as app.js builds it.
type page struct {
	Registry string
	Status   struct {
		Loaded    bool
		Reachable bool
		Problem   string
		Since     int64
		Note      string
	}
	Services map[string][]pageInstance
	Leases   map[string]*pageLease
	// at is when each lease's reading arrived.
	at map[string]time.Time
}

type pageInstance struct {
	ID       string
	Address  string
	Metadata [][2]string
	Lease    string
}

type pageLease struct {
	TTLMillis     int64 `json:"ttl_ms"`
	GrantedMillis int64 `json:"granted_ms"`
	Expired       bool
}

// apply takes one event into p.
func (p *page) apply(t *testing.T, ev sseEvent) {
	t.Helper()
	now := time.Now()
	var msg struct {
		Registry string
		Status   json.RawMessage
		Services []struct {
			Name      string
			Instances []pageInstance
		}
		Leases map[string]*pageLease
	}
	if err := json.Unmarshal([]byte(ev.data), &msg); err != nil {
		t.Fatalf("event %s: %v: %s", ev.event, err, ev.data)
	}
	switch ev.event {
	case "state":
		p.Registry = msg.Registry
		if err := json.Unmarshal(msg.Status, &p.Status); err != nil {
			t.Fatal(err)
		}
		p.Services, p.Leases, p.at = map[string][]pageInstance{}, map[string]*pageLease{}, map[string]time.Time{}
	case "status":
		p.Status = struct {
			Loaded    bool
			Reachable bool
			Problem   string
			Since     int64
			Note      string
		}{}
		if err := json.Unmarshal([]byte(ev.data), &p.Status); err != nil {
			t.Fatal(err)
		}
		return
	case "services", "leases":
	default:
		t.Fatalf("unknown event %q", ev.event)
	}
	for _, s := range msg.Services {
		if len(s.Instances) == 0 {
			delete(p.Services, s.Name)
		} else {
			p.Services[s.Name] = s.Instances
		}
	}
	for id, l := range msg.Leases {
		if l == nil {
			delete(p.Leases, id)
			delete(p.at, id)
		} else {
			p.Leases[id], p.at[id] = l, now
		}
	}
}

// ttl returns what the page shows as the time left on the lease of the
// instance service/id at time now: ok is false when it has none or it
// was not read.
func (p *page) ttl(service, id string, now time.Time) (left time.Duration, ok bool) {
	for _, in := range p.Services[service] {
		if in.ID == id {
			l := p.Leases[in.Lease]
			if in.Lease == "" || l == nil {
				return 0, false
			}
			return time.Duration(l.TTLMillis)*time.Millisecond - now.Sub(p.at[in.Lease]), true
		}
	}
	return 0, false
}

// follow reads the events of s into p until cond holds, failing t if
// it does not within waitTimeout.
func (p *page) follow(t *testing.T, s *stream, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("the page did not come to show %s within %v", what, waitTimeout)
		}
		p.apply(t, s.next(t))
	}
}
