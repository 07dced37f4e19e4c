package grpcresolver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/discovery/grpcresolver"
	"github.com/roster-sd/roster/internal/testing/resolvertest"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

var errBroken = errors.New("test: watch broken")

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// newBuilder returns grpcresolver.NewBuilder(r, opts...), failing the test
// on an error.
func newBuilder(t *testing.T, r discovery.Resolver, opts ...grpcresolver.Option) *grpcresolver.Builder {
	t.Helper()
	b, err := grpcresolver.NewBuilder(r, opts...)
	if err != nil {
		t.Fatalf("NewBuilder: %v", err)
	}
	return b
}

// dial opens a round-robin ClientConn on roster:///greeter through b.
func dial(t *testing.T, b resolver.Builder) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(grpcresolver.Scheme+":///"+service,
		grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// spread makes n calls and counts them by server.
func spread(t *testing.T, conn *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for range n {
		got[mustCall(t, conn)]++
	}
	return got
}

func TestRoundRobinFollowsRegistry(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	s1, s2, s3 := startServer(t, "s1"), startServer(t, "s2"), startServer(t, "s3")
	e.Register(t, s1, s2, s3)
	b := &sentBuilder{Builder: newBuilder(t, e.Up, grpcresolver.WithLogger(testLogger(t)), grpcresolver.WithRetry(fastRetry))}
	conn := dial(t, b)
	defer conn.Close()

	// round_robin connects to every address; wait until all three answer.
	waitAnswering(t, conn, 3)
	got := spread(t, conn, 30)
	t.Logf("30 calls: %v", got)
	for _, s := range []string{"s1", "s2", "s3"} {
		if got[s] < 5 {
			t.Errorf("%s got %d of 30 calls, want about 10 (at least 5): %v", s, got[s], got)
		}
	}

	// A deregistered server stops receiving calls.
	e.Deregister(t, s2)
	// The event: gRPC has taken in a state without s2 (its picker is
	// rebuilt within UpdateState), so no call made afterwards reaches s2.
	want := []string{s1.Address, s3.Address}
	slices.Sort(want)
	testwait.Until(t, waitLong, "gRPC to take in the set without s2", func() bool {
		last, ok := b.last()
		return ok && slices.Equal(last, want)
	})
	got = spread(t, conn, 20)
	t.Logf("20 calls after deregistering s2: %v", got)
	if got["s2"] != 0 {
		t.Errorf("deregistered s2 got %d of 20 calls, want 0", got["s2"])
	}
	if got["s1"] == 0 || got["s3"] == 0 {
		t.Errorf("calls after deregistering s2 = %v, want both s1 and s3", got)
	}

	// A new server starts receiving calls.
	s4 := startServer(t, "s4")
	e.Register(t, s4)
	testwait.Until(t, waitLong, "the new server to receive calls", func() bool {
		return mustCall(t, conn) == "s4"
	})

	// Closing the ClientConn stops the resolver and its upstream watch.
	if n := e.Up.ActiveWatchers(); n != 1 {
		t.Errorf("%d upstream watchers open, want 1", n)
	}
	conn.Close()
	testwait.Until(t, waitLong, "the resolver to stop its watch", func() bool { return e.Up.ActiveWatchers() == 0 })
	if got := e.Up.Watches(); got != 1 {
		t.Errorf("upstream Watch called %d times, want 1: the watch never failed", got)
	}
}

func TestRecoversFromUpstreamFailure(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	s1 := startServer(t, "s1")
	e.Register(t, s1)
	e.Up.FailWatch(errBroken)
	b := newBuilder(t, e.Up, grpcresolver.WithLogger(testLogger(t)), grpcresolver.WithRetry(fastRetry))
	conn := dial(t, b)
	defer conn.Close()

	// With no address yet, the calls fail with the resolver's error.
	_, err := call(context.Background(), conn)
	if err == nil || !strings.Contains(err.Error(), errBroken.Error()) {
		t.Fatalf("call while Watch fails = %v, want an error naming %q", err, errBroken)
	}
	// The resolver keeps trying.
	watches := e.Up.Watches()
	testwait.Until(t, waitLong, "the resolver to retry Watch", func() bool { return e.Up.Watches() >= watches+2 })

	e.Up.FailWatch(nil)
	testwait.Until(t, waitLong, "calls to succeed once Watch works", func() bool {
		name, err := call(context.Background(), conn)
		return err == nil && name == "s1"
	})

	// The watch breaks while the registry is down: calls keep going to
	// the last known addresses, and changes are seen once it is back.
	e.Store.SetAvailable(false)
	e.Up.BreakWatchers(errBroken)
	watches = e.Up.Watches()
	testwait.Until(t, waitLong, "the resolver to retry Watch", func() bool { return e.Up.Watches() >= watches+2 })
	if name, err := call(context.Background(), conn); err != nil || name != "s1" {
		t.Errorf("call during the outage = %q, %v; want s1", name, err)
	}
	e.Store.SetAvailable(true)
	s2 := startServer(t, "s2")
	e.Register(t, s2)
	testwait.Until(t, waitLong, "the resolver to resume and send the new server", func() bool {
		name, err := call(context.Background(), conn)
		return err == nil && name == "s2"
	})
}

func TestReportsErrorsAndResumes(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	a := discovery.Instance{Service: service, ID: "a", Address: "10.0.0.1:1"}
	e.Register(t, a)
	e.Up.FailWatch(errBroken)
	b := newBuilder(t, e.Up, grpcresolver.WithLogger(testLogger(t)), grpcresolver.WithRetry(fastRetry))
	r, cc := build(t, b)
	defer r.Close()

	testwait.Until(t, waitLong, "a reported error", func() bool { _, n := cc.counts(); return n >= 2 })
	if err := cc.lastErr(); !errors.Is(err, errBroken) {
		t.Errorf("reported error = %v, want it to wrap the upstream's", err)
	}
	if n, _ := cc.counts(); n != 0 {
		t.Errorf("%d states sent while Watch fails, want 0", n)
	}

	e.Up.FailWatch(nil)
	cc.waitStates(t, 1, "the first state")
	st, _ := cc.lastState()
	if got, want := addrs(st), []string{a.Address}; !slices.Equal(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}

	// The watcher fails; after resuming, the resolver sends the state again
	// (gRPC holds an error meanwhile), then follows changes.
	_, errsBefore := cc.counts()
	e.Up.BreakWatchers(errBroken)
	cc.waitStates(t, 2, "the state to be sent again after the error")
	if _, n := cc.counts(); n != errsBefore+1 {
		t.Errorf("errors reported = %d, want %d", n, errsBefore+1)
	}
	bb := discovery.Instance{Service: service, ID: "b", Address: "10.0.0.2:2"}
	e.Register(t, bb)
	testwait.Until(t, waitLong, "the state with the new instance", func() bool {
		st, _ := cc.lastState()
		return slices.Equal(addrs(st), []string{a.Address, bb.Address})
	})
}

// TestRegistryOutageKeepsCalling: while the registry is unreachable the
// calls go on to the known servers; once it is back, the resolver follows
// the registry again, on the same upstream watch.
func TestRegistryOutageKeepsCalling(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cache bool // through a cache.Resolver, whose watchers see the outage too
	}{
		{"direct", false},
		{"through cache", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := resolvertest.NewEnv(t)
			s1, s2 := startServer(t, "s1"), startServer(t, "s2")
			e.Register(t, s1, s2)
			var up discovery.Resolver = e.Up
			if tc.cache {
				c, err := cache.New(e.Up, cache.WithStaleOnError(0), cache.WithRetry(fastRetry))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				up = c
			}
			counter := &nextCounter{Resolver: up}
			b := newBuilder(t, counter, grpcresolver.WithLogger(testLogger(t)), grpcresolver.WithRetry(fastRetry))
			conn := dial(t, b)
			defer conn.Close()
			waitAnswering(t, conn, 2)

			e.Store.SetAvailable(false)
			// Once the resolver has been told of the outage and waits
			// for the next set, it has done all the outage makes it do
			// at once. (What it might do later, on a timer, is
			// TestRegistryOutageState's to check, on a fake clock.)
			testwait.Until(t, waitLong, "the resolver to handle the outage and wait for the next set",
				func() bool { return counter.outageHandled(1) })
			got := spread(t, conn, 20) // fails the test on any error
			t.Logf("20 calls during the outage: %v", got)
			if got["s1"] == 0 || got["s2"] == 0 {
				t.Errorf("calls during the outage = %v, want both servers still used", got)
			}

			e.Store.SetAvailable(true)
			s3 := startServer(t, "s3")
			e.Register(t, s3)
			testwait.Until(t, waitLong, "the server registered after the outage to receive calls", func() bool {
				return mustCall(t, conn) == "s3"
			})
			if got := e.Up.Watches(); got != 1 {
				t.Errorf("upstream Watch called %d times, want 1: the watch survives the outage", got)
			}
		})
	}
}

// TestRegistryOutageState checks what the resolver sends to gRPC across an
// outage: nothing during it, the same addresses again after it, and no
// error, since gRPC holds good addresses.
func TestRegistryOutageState(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := resolvertest.NewEnv(t)
		a := discovery.Instance{Service: service, ID: "a", Address: "10.0.0.1:1"}
		e.Register(t, a)
		b := newBuilder(t, e.Up, grpcresolver.WithLogger(testLogger(t)), grpcresolver.WithRetry(fastRetry))
		r, cc := build(t, b)
		defer r.Close()
		cc.waitStates(t, 1, "the first state")

		for round := 1; round <= 2; round++ {
			e.Store.SetAvailable(false)
			// The bubble's clock passes 50ms, through the resolver's
			// retries, and synctest.Wait lets every goroutine woken at
			// its end finish: nothing is left to send, so the absence
			// check below is exact.
			time.Sleep(50 * time.Millisecond)
			synctest.Wait()
			if states, errs := cc.counts(); states != round || errs != 0 {
				t.Errorf("outage %d: %d states and %d errors sent, want %d and none", round, states, errs, round)
			}
			e.Store.SetAvailable(true)
			cc.waitStates(t, round+1, "the state to be sent again after the outage")
			st, _ := cc.lastState()
			if got, want := addrs(st), []string{a.Address}; !slices.Equal(got, want) {
				t.Errorf("addresses after outage %d = %v, want %v", round, got, want)
			}
		}
		if _, errs := cc.counts(); errs != 0 {
			t.Errorf("%d errors reported, want none", errs)
		}
		if got := e.Up.Watches(); got != 1 {
			t.Errorf("upstream Watch called %d times, want 1", got)
		}
	})
}

// TestRegistryOutageBeforeFirstSet: with no address in gRPC yet, the
// outage is reported, so calls fail with the reason rather than wait.
func TestRegistryOutageBeforeFirstSet(t *testing.T) {
	t.Parallel()
	feed := backendkit.NewFeed()
	defer feed.Close(nil)
	feed.Fail(errBroken)
	b := newBuilder(t, resolvertest.Feed{Feed: feed}, grpcresolver.WithLogger(testLogger(t)))
	r, cc := build(t, b)
	defer r.Close()
	testwait.Until(t, waitLong, "a reported error", func() bool { _, n := cc.counts(); return n == 1 })
	if err := cc.lastErr(); !errors.Is(err, discovery.ErrUnavailable) || !errors.Is(err, errBroken) {
		t.Errorf("reported error = %v, want it to wrap discovery.ErrUnavailable and its cause", err)
	}
	a := discovery.Instance{Service: service, ID: "a", Address: "10.0.0.1:1"}
	feed.Publish([]discovery.Instance{a})
	cc.waitStates(t, 1, "the first state")
	st, _ := cc.lastState()
	if got, want := addrs(st), []string{a.Address}; !slices.Equal(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}
}

func TestResolveNow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const interval = 150 * time.Millisecond
		// The watcher reports no instance, then the registry unreachable, and
		// then no change; Resolve always has a fresh set.
		feed := backendkit.NewFeed()
		defer feed.Close(nil)
		feed.Publish(nil)
		up := &splitResolver{feed: feed}
		b := newBuilder(t, up, grpcresolver.WithResolveNowInterval(interval))
		r, cc := build(t, b)
		defer r.Close()
		cc.waitStates(t, 1, "the first state")
		feed.Fail(errors.New("test outage"))
		// With no address held, the resolver reports the outage to gRPC.
		testwait.Until(t, waitLong, "the outage reported", func() bool { _, n := cc.counts(); return n == 1 })

		up.set(1)
		r.ResolveNow(resolver.ResolveNowOptions{})
		testwait.Until(t, waitLong, "ResolveNow to send the resolved set", func() bool {
			st, _ := cc.lastState()
			return slices.Equal(addrs(st), []string{"10.0.0.1:1001"})
		})
		first := time.Now()

		// Within the interval, requests are merged into one at its end.
		up.set(2)
		for range 5 {
			r.ResolveNow(resolver.ResolveNowOptions{})
		}
		testwait.Until(t, waitLong, "the merged ResolveNow", func() bool {
			st, _ := cc.lastState()
			return slices.Equal(addrs(st), []string{"10.0.0.1:1002"})
		})
		if d := time.Since(first); d < interval/2 {
			t.Errorf("second forced Resolve %v after the first, want at least the interval %v", d, interval)
		}
		// A whole interval more on the bubble's clock, every goroutine
		// settled (synctest.Wait): no third Resolve.
		time.Sleep(interval)
		synctest.Wait()
		if got := up.resolves.Load(); got != 2 {
			t.Errorf("upstream Resolve called %d times for 6 ResolveNow calls, want 2", got)
		}
	})
}

// TestResolveNowWhileWatchingSendsOnlyWatchSets: while the watch is
// healthy, ResolveNow reads nothing upstream, so gRPC never holds a set
// other than the watch's: a separately read set could be newer than the
// watch's next set (which would roll the addresses back) or older (#15).
func TestResolveNowWhileWatchingSendsOnlyWatchSets(t *testing.T) {
	t.Parallel()
	feed := backendkit.NewFeed()
	defer feed.Close(nil)
	watchSet := func(port int) []discovery.Instance {
		return []discovery.Instance{{Service: service, ID: "w", Address: fmt.Sprintf("10.0.0.2:%d", port)}}
	}
	feed.Publish(watchSet(1))
	up := &splitResolver{feed: feed}
	up.set(7) // what a separate read would return
	b := newBuilder(t, up, grpcresolver.WithResolveNowInterval(0))
	r, cc := build(t, b)
	defer r.Close()
	cc.waitStates(t, 1, "the first state")
	for range 5 {
		r.ResolveNow(resolver.ResolveNowOptions{})
	}
	feed.Publish(watchSet(2))
	testwait.Until(t, waitLong, "the watch's second set", func() bool {
		st, _ := cc.lastState()
		return slices.Equal(addrs(st), []string{"10.0.0.2:2"})
	})
	r.ResolveNow(resolver.ResolveNowOptions{})
	feed.Publish(watchSet(3))
	testwait.Until(t, waitLong, "the watch's third set", func() bool {
		st, _ := cc.lastState()
		return slices.Equal(addrs(st), []string{"10.0.0.2:3"})
	})
	if got := up.resolves.Load(); got != 0 {
		t.Errorf("upstream Resolve called %d times while the watch was healthy, want 0", got)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var got []string
	for _, st := range cc.states {
		got = append(got, addrs(st)...)
	}
	if want := []string{"10.0.0.2:1", "10.0.0.2:2", "10.0.0.2:3"}; !slices.Equal(got, want) {
		t.Errorf("gRPC got the addresses %v, want only the watch's sets %v", got, want)
	}
}

// splitResolver watches a feed but resolves the set given to set.
type splitResolver struct {
	feed     *backendkit.Feed
	resolves atomic.Int64
	port     atomic.Int64
}

func (s *splitResolver) set(n int64) { s.port.Store(n) }

func (s *splitResolver) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	s.resolves.Add(1)
	addr := fmt.Sprintf("10.0.0.1:%d", 1000+s.port.Load())
	return []discovery.Instance{{Service: service, ID: "new", Address: addr}}, nil
}

func (s *splitResolver) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	return s.feed.NewWatcher(context.Background(), nil), nil
}

func TestBuildRejectsBadTargets(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	b := newBuilder(t, e.Up)
	if got := b.Scheme(); got != "roster" {
		t.Errorf("Scheme() = %q, want roster", got)
	}
	cases := []struct {
		target  string
		invalid bool // the error wraps ErrInvalidInstance
	}{
		{"roster:///", true},
		{"roster:///a/b", true},
		{"roster:///a%20b", true},
		{"roster:///..", true},
		{"roster:///" + strings.Repeat("x", 129), true},
		{"roster://authority/greeter", false},
	}
	for _, tc := range cases {
		r, err := b.Build(target(t, tc.target), &fakeCC{}, resolver.BuildOptions{})
		if err == nil {
			r.Close()
			t.Errorf("Build(%q) succeeded, want an error", tc.target)
			continue
		}
		var fe *discovery.FieldError
		if tc.invalid && (!errors.Is(err, discovery.ErrInvalidInstance) || !errors.As(err, &fe) || fe.Field != "Service") {
			t.Errorf("Build(%q) = %v, want ErrInvalidInstance on field Service", tc.target, err)
		}
	}
	if got := e.Up.Watches(); got != 0 {
		t.Errorf("upstream Watch called %d times for bad targets, want 0", got)
	}
}

func TestAddressesCarryInstances(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	ins := []discovery.Instance{
		{Service: service, ID: "b", Address: "10.0.0.2:2", Metadata: map[string]string{"zone": "b"}},
		{Service: service, ID: "a", Address: "10.0.0.1:1", Metadata: map[string]string{"zone": "a", "v": "1"}},
	}
	e.Register(t, ins...)
	b := newBuilder(t, e.Up)
	r, cc := build(t, b)
	defer r.Close()
	cc.waitStates(t, 1, "the first state")
	st, _ := cc.lastState()

	want := discovery.NormalizeSet(ins)
	if len(st.Addresses) != len(want) || len(st.Endpoints) != len(want) {
		t.Fatalf("state has %d addresses and %d endpoints, want %d", len(st.Addresses), len(st.Endpoints), len(want))
	}
	for i, addr := range st.Addresses {
		got, ok := grpcresolver.InstanceFromAddress(addr)
		if !ok || !got.Equal(want[i]) {
			t.Errorf("InstanceFromAddress(address %d) = %+v, %v; want %+v", i, got, ok, want[i])
		}
		//lint:ignore SA1019 the deprecated field is read to check that the resolver leaves it empty
		if addr.Addr != want[i].Address || addr.ServerName != "" || addr.BalancerAttributes != nil {
			t.Errorf("address %d = %+v", i, addr)
		}
		got, ok = grpcresolver.InstanceFromEndpoint(st.Endpoints[i])
		if !ok || !got.Equal(want[i]) {
			t.Errorf("InstanceFromEndpoint(endpoint %d) = %+v, %v; want %+v", i, got, ok, want[i])
		}
		// The instance is a copy.
		got.Metadata["zone"] = "changed"
		if again, _ := grpcresolver.InstanceFromAddress(addr); again.Metadata["zone"] != want[i].Metadata["zone"] {
			t.Errorf("modifying a returned instance changed the address's")
		}
	}

	// Addresses of equal instances are equal (metadata maps compare by
	// value), and differ when the metadata does.
	e.Register(t, discovery.Instance{Service: service, ID: "c", Address: "10.0.0.3:3"})
	cc.waitStates(t, 2, "the second state")
	st2, _ := cc.lastState()
	if !st.Addresses[0].Equal(st2.Addresses[0]) || !st.Addresses[1].Equal(st2.Addresses[1]) {
		t.Errorf("addresses of unchanged instances are not Equal across updates")
	}
	if st.Addresses[0].Equal(st.Addresses[1]) {
		t.Errorf("addresses of different instances are Equal")
	}

	if _, ok := grpcresolver.InstanceFromAddress(resolver.Address{Addr: "10.0.0.1:1"}); ok {
		t.Errorf("InstanceFromAddress of a plain address: ok, want not ok")
	}
	if _, ok := grpcresolver.InstanceFromEndpoint(resolver.Endpoint{}); ok {
		t.Errorf("InstanceFromEndpoint of an empty endpoint: ok, want not ok")
	}
}

func TestCloseStopsResolver(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		failed bool // Watch fails: Close interrupts an hour-long retry wait
	}{
		{"watching", false},
		{"retrying", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := resolvertest.NewEnv(t)
			e.Register(t, discovery.Instance{Service: service, ID: "a", Address: "10.0.0.1:1"})
			if tc.failed {
				e.Up.FailWatch(errBroken)
			}
			b := newBuilder(t, e.Up, grpcresolver.WithRetry(retry.Policy{Base: time.Hour, Max: time.Hour}))
			r, cc := build(t, b)
			testwait.Until(t, waitLong, "the first state or error", func() bool { s, e := cc.counts(); return s+e > 0 })
			done := make(chan struct{})
			go func() {
				r.Close()
				r.Close()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(waitLong):
				t.Fatal("Close did not return")
			}
			if n := e.Up.ActiveWatchers(); n != 0 {
				t.Errorf("%d upstream watchers open after Close, want 0", n)
			}
		})
	}
}

func TestWithCache(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	s1, s2 := startServer(t, "s1"), startServer(t, "s2")
	e.Register(t, s1, s2)
	c, err := cache.New(e.Up)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := newBuilder(t, c)

	// Three ClientConns share the cache's one upstream watch.
	for range 3 {
		conn := dial(t, b)
		defer conn.Close()
		waitAnswering(t, conn, 2)
	}
	if got := e.Up.Watches(); got != 1 {
		t.Errorf("upstream Watch called %d times for 3 ClientConns through the cache, want 1", got)
	}
}

func TestNewBuilderRejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	cases := []struct {
		name       string
		r          discovery.Resolver
		opt        grpcresolver.Option
		wantName   string // the argument or option the error names
		wantReason string // and the reason it gives
		wantPolicy bool   // the error wraps retry.ErrInvalidPolicy
	}{
		{"nil resolver", nil, grpcresolver.WithLogger(nil), "resolver", "nil", false},
		{"negative interval", e.Up, grpcresolver.WithResolveNowInterval(-time.Second), "WithResolveNowInterval", "-1s", false},
		{"zero timeout", e.Up, grpcresolver.WithTimeout(0), "WithTimeout", "0s", false},
		{"invalid retry policy", e.Up, grpcresolver.WithRetry(retry.Policy{Base: -1}), "WithRetry", "Base", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// goleak (TestMain) checks that nothing was started.
			b, err := grpcresolver.NewBuilder(tc.r, tc.opt)
			if err == nil {
				t.Fatal("NewBuilder succeeded, want an error")
			}
			if b != nil {
				t.Error("NewBuilder returned a Builder with its error")
			}
			if !errors.Is(err, grpcresolver.ErrInvalidOption) {
				t.Errorf("NewBuilder = %v, want an error wrapping ErrInvalidOption", err)
			}
			if got := errors.Is(err, retry.ErrInvalidPolicy); got != tc.wantPolicy {
				t.Errorf("errors.Is(%v, retry.ErrInvalidPolicy) = %v, want %v", err, got, tc.wantPolicy)
			}
			for _, want := range []string{tc.wantName, tc.wantReason} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewBuilder = %q, want it to mention %q", err, want)
				}
			}
		})
	}
	if got := e.Up.Watches() + e.Up.Resolves(); got != 0 {
		t.Errorf("upstream called %d times by failed NewBuilders, want 0", got)
	}
}

func TestNewBuilderIgnoresNilOption(t *testing.T) {
	t.Parallel()
	e := resolvertest.NewEnv(t)
	e.Register(t, discovery.Instance{Service: service, ID: "a", Address: "10.0.0.1:1"})
	b := newBuilder(t, e.Up, nil)
	r, cc := build(t, b)
	defer r.Close()
	cc.waitStates(t, 1, "the first state")
}
