package grpcresolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

const (
	// waitLong bounds every wait for something that must happen.
	waitLong = 10 * time.Second
	service  = "greeter"
	// serverHeader is the response header in which each test server
	// sends its name.
	serverHeader = "x-server"
)

// fastRetry keeps fault tests in the milliseconds.
var fastRetry = retry.Policy{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// startServer starts a gRPC server with the standard health service on a
// free loopback port. Its unary interceptor names the server in the
// response header serverHeader. The server stops when the test ends.
func startServer(t *testing.T, name string) discovery.Instance {
	t.Helper()
	in, _ := startStoppableServer(t, name)
	in.Metadata = map[string]string{"name": name}
	return in
}

// startStoppableServer starts a gRPC health server that names itself in
// a header, stopped by the returned func (or at the test's end).
func startStoppableServer(t *testing.T, name string) (discovery.Instance, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := grpc.SetHeader(ctx, metadata.Pairs(serverHeader, name)); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { srv.Stop(); <-done }) }
	t.Cleanup(stop)
	return discovery.Instance{Service: service, ID: name, Address: lis.Addr().String()}, stop
}

// call makes one health check on conn and returns the name of the server
// that answered.
func call(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	var hdr metadata.MD
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	if err != nil {
		return "", err
	}
	if v := hdr.Get(serverHeader); len(v) == 1 {
		return v[0], nil
	}
	return "", nil
}

// mustCall is call with a background context that fails t on error.
func mustCall(t *testing.T, conn *grpc.ClientConn) string {
	t.Helper()
	name, err := call(context.Background(), conn)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	return name
}

// waitAnswering calls through conn until n different servers have
// answered, failing t on a call error or if that takes too long.
func waitAnswering(t *testing.T, conn *grpc.ClientConn, n int) {
	t.Helper()
	seen := make(map[string]bool)
	testwait.Until(t, waitLong, fmt.Sprintf("%d servers to answer", n), func() bool {
		seen[mustCall(t, conn)] = true
		return len(seen) == n
	})
}

// fakeCC records what a resolver sends to gRPC.
type fakeCC struct {
	resolver.ClientConn // not implemented: panics if used

	mu     sync.Mutex
	states []resolver.State
	errs   []error
}

func (f *fakeCC) UpdateState(s resolver.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, s)
	return nil
}

func (f *fakeCC) ReportError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *fakeCC) counts() (states, errs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.states), len(f.errs)
}

// lastState returns the last state sent and whether there is one.
func (f *fakeCC) lastState() (resolver.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return resolver.State{}, false
	}
	return f.states[len(f.states)-1], true
}

func (f *fakeCC) lastErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs[len(f.errs)-1]
}

// build builds a resolver of roster:///greeter through b that sends what
// it resolves to a new fakeCC, and returns both; the caller closes the
// resolver.
func build(t *testing.T, b resolver.Builder) (resolver.Resolver, *fakeCC) {
	t.Helper()
	cc := &fakeCC{}
	r, err := b.Build(target(t, "roster:///greeter"), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r, cc
}

// waitStates waits until f has been sent n states.
func (f *fakeCC) waitStates(t *testing.T, n int, what string) {
	t.Helper()
	testwait.Until(t, waitLong, what, func() bool { got, _ := f.counts(); return got == n })
}

// addrs lists the Addr of every address of s.
func addrs(s resolver.State) []string {
	out := make([]string, 0, len(s.Addresses))
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	return out
}

func target(t *testing.T, s string) resolver.Target {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return resolver.Target{URL: *u}
}

// testLogger routes logs to t.Log until the test ends.
func testLogger(t testing.TB) hclog.Logger { return testlog.New(t) }

// nextCounter passes its calls on to a Resolver and counts, over the
// watchers it hands out, the Next calls in progress and those that
// returned an error wrapping discovery.ErrUnavailable: a resolver that has
// been told of an outage and waits in Next again has done all that the
// outage makes it do.
type nextCounter struct {
	discovery.Resolver

	mu       sync.Mutex
	pending  int // Next calls in progress
	outages  int // Next calls that returned discovery.ErrUnavailable
	watchers int // watchers handed out
}

func (c *nextCounter) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	w, err := c.Resolver.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.watchers++
	c.mu.Unlock()
	return &countedWatcher{Watcher: w, c: c}, nil
}

// outageHandled reports whether the one watcher has returned n outages
// and is waiting in Next again.
func (c *nextCounter) outageHandled(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchers == 1 && c.outages == n && c.pending == 1
}

type countedWatcher struct {
	discovery.Watcher
	c *nextCounter
}

func (w *countedWatcher) Next(ctx context.Context) ([]discovery.Instance, error) {
	w.c.mu.Lock()
	w.c.pending++
	w.c.mu.Unlock()
	set, err := w.Watcher.Next(ctx)
	w.c.mu.Lock()
	w.c.pending--
	if errors.Is(err, discovery.ErrUnavailable) {
		w.c.outages++
	}
	w.c.mu.Unlock()
	return set, err
}

// sentBuilder wraps a resolver.Builder to record every state its resolvers
// have handed to gRPC: a state is recorded once ClientConn.UpdateState has
// returned, that is once the balancer has taken it in (round_robin builds
// its new picker within that call), so a test can wait for that event
// instead of for calls that stop reaching a server.
type sentBuilder struct {
	resolver.Builder
	mu   sync.Mutex
	sent [][]string // the addresses of each state sent, in order
}

func (b *sentBuilder) Build(t resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	return b.Builder.Build(t, &sentCC{ClientConn: cc, b: b}, opts)
}

// last returns the addresses of the last state sent, and whether there is
// one.
func (b *sentBuilder) last() ([]string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sent) == 0 {
		return nil, false
	}
	return b.sent[len(b.sent)-1], true
}

// taken returns how many states gRPC has taken in so far.
func (b *sentBuilder) taken() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

// backAt returns the number of states gRPC had taken in when it took in
// the first state from the from-th on (counting from 0) that holds addr,
// or -1 when none does.
func (b *sentBuilder) backAt(addr string, from int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := from; i < len(b.sent); i++ {
		if slices.Contains(b.sent[i], addr) {
			return i + 1
		}
	}
	return -1
}

// waitLeft waits until the last state gRPC has taken in holds no addr,
// and returns how many states it had taken in then: as round_robin builds
// its picker within UpdateState, no call started from then on may reach
// addr until a later state holds it again (backAt).
func (b *sentBuilder) waitLeft(t *testing.T, addr string) int {
	t.Helper()
	var n int
	testwait.Until(t, waitLong, "gRPC to take in a state without "+addr, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		n = len(b.sent)
		return n > 0 && !slices.Contains(b.sent[n-1], addr)
	})
	return n
}

type sentCC struct {
	resolver.ClientConn
	b *sentBuilder
}

func (c *sentCC) UpdateState(s resolver.State) error {
	err := c.ClientConn.UpdateState(s)
	got := addrs(s)
	for _, ep := range s.Endpoints {
		for _, a := range ep.Addresses {
			got = append(got, a.Addr)
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	c.b.mu.Lock()
	c.b.sent = append(c.b.sent, got)
	c.b.mu.Unlock()
	return err
}
