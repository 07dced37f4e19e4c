package webui_test

import (
	"bufio"
	"context"
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
	"github.com/roster-sd/roster/internal/testlog"
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
