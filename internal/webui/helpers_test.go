package webui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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

// leasedView is the memory backend's discovery.OperatorView, with leases
// when ttl is set: each instance is then held by a lease of its own
// (named service/id) that always has ttl left, as a registry that renews
// it would say.
type leasedView struct {
	*memory.Backend

	mu    sync.Mutex
	ttl   time.Duration
	reads int // of leases
}

// leaseReads returns how many times ReadLease was called.
func (v *leasedView) leaseReads() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.reads
}

func (v *leasedView) setTTL(d time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ttl = d
}

func (v *leasedView) FollowRegistry(ctx context.Context, apply func(discovery.RegistryUpdate)) error {
	return v.Backend.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
		v.mu.Lock()
		leased := v.ttl != 0
		v.mu.Unlock()
		for _, set := range u.Services {
			for i := range set.Instances {
				if leased {
					set.Instances[i].Lease = set.Instances[i].Key().String()
				}
			}
		}
		apply(u)
	})
}

func (v *leasedView) ReadLease(ctx context.Context, lease string) (discovery.LeaseInfo, error) {
	if _, err := v.Backend.ReadLease(ctx, lease); err != nil {
		return discovery.LeaseInfo{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reads++
	return discovery.LeaseInfo{Found: v.ttl != 0, Left: v.ttl, Granted: v.ttl}, nil
}

// fixture is a memory registry, a Handler on it and an HTTP server.
type fixture struct {
	t     *testing.T
	store *memory.Store
	b     *memory.Backend
	reg   *leasedView
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
	reg := &leasedView{Backend: b}
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
	}
	Services map[string][]pageInstance
	Leases   map[string]*pageLease
	// at is when each lease's reading arrived.
	at map[string]time.Time
}

type pageInstance struct {
	ID        string
	Address   string
	Metadata  [][2]string
	Condition string
	Reason    string
	Weight    int
	Zone      string
	Lease     string
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
