package grpcresolver_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/grpcresolver"
	rosterhealth "github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/internal/testing/resolvertest"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// ids lists the instances behind a state's endpoints.
func ids(t *testing.T, st resolver.State) []string {
	t.Helper()
	var out []string
	for _, ep := range st.Endpoints {
		in, ok := grpcresolver.InstanceFromEndpoint(ep)
		if !ok {
			t.Fatalf("endpoint %v carries no instance", ep)
		}
		out = append(out, in.ID)
	}
	return out
}

// TestOnlyRoutableInstancesReachGRPC: gRPC gets the serving instances
// only, with weight and zone as endpoint attributes; when none is serving,
// the not-ready ones (default) or none (NoFallback); never draining ones.
func TestOnlyRoutableInstancesReachGRPC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy discovery.RoutePolicy
		noneUp []string // what gRPC gets when a is draining too
	}{
		{"default", discovery.RoutePolicy{}, []string{"b"}},
		{"no fallback", discovery.RoutePolicy{NoFallback: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := resolvertest.NewEnv(t)
			a := discovery.Instance{Service: service, ID: "a", Address: "10.0.0.1:1", Weight: 300, Zone: "eu-west-1a"}
			b := discovery.Instance{Service: service, ID: "b", Address: "10.0.0.2:1", Condition: discovery.ConditionNotReady}
			c := discovery.Instance{Service: service, ID: "c", Address: "10.0.0.3:1", Condition: discovery.ConditionDraining}
			d := discovery.Instance{Service: service, ID: "d", Address: "10.0.0.4:1"}
			e.Register(t, a, b, c, d)
			r, cc := build(t, newBuilder(t, e.Up, grpcresolver.WithRoutePolicy(tc.policy)))
			defer r.Close()
			wantState := func(what string, want []string) resolver.State {
				t.Helper()
				var st resolver.State
				testwait.Until(t, waitLong, what, func() bool {
					var ok bool
					st, ok = cc.lastState()
					return ok && slices.Equal(ids(t, st), want)
				})
				return st
			}
			st := wantState("a and d only", []string{"a", "d"})
			if w, ok := grpcresolver.WeightFromEndpoint(st.Endpoints[0]); !ok || w != 300 {
				t.Errorf("weight of a = %d, %v; want 300", w, ok)
			}
			if z, ok := grpcresolver.ZoneFromEndpoint(st.Endpoints[0]); !ok || z != "eu-west-1a" {
				t.Errorf("zone of a = %q, %v; want eu-west-1a", z, ok)
			}
			if w, ok := grpcresolver.WeightFromEndpoint(st.Endpoints[1]); !ok || w != discovery.DefaultWeight {
				t.Errorf("weight of d (unset) = %d, %v; want %d", w, ok, discovery.DefaultWeight)
			}
			if len(st.Addresses) != 2 {
				t.Errorf("%d addresses, want 2", len(st.Addresses))
			}

			a.Condition, d.Condition = discovery.ConditionDraining, discovery.ConditionDraining
			e.Register(t, a, d)
			wantState("none serving", tc.noneUp)

			a.Condition = discovery.ConditionServing
			e.Register(t, a)
			wantState("a serving again", []string{"a"})
		})
	}
	if _, ok := grpcresolver.WeightFromEndpoint(resolver.Endpoint{}); ok {
		t.Error("WeightFromEndpoint of an empty endpoint: ok")
	}
}

// gatedServer is a real gRPC server with the standard health service,
// which the test can flip and stop gracefully.
type gatedServer struct {
	in   discovery.Instance
	hs   *grpchealth.Server
	srv  *grpc.Server
	done chan struct{}
}

func startGated(t *testing.T, name string) *gatedServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedServer{hs: grpchealth.NewServer(), done: make(chan struct{})}
	g.srv = grpc.NewServer(grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := grpc.SetHeader(ctx, metadata.Pairs(serverHeader, name)); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(g.srv, g.hs)
	go func() {
		defer close(g.done)
		g.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		g.srv.Stop()
		<-g.done
	})
	g.in = discovery.Instance{Service: service, ID: name, Address: lis.Addr().String()}
	return g
}

// load calls through conn from two goroutines until stopped, counting
// answers by server and failures.
type load struct {
	mu sync.Mutex
	// counts holds the calls answered by server and by the number of
	// states gRPC had taken in when the call started.
	counts  map[string]map[int]int
	fails   atomic.Int64
	lastErr atomic.Value
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startLoad(conn *grpc.ClientConn, sent *sentBuilder) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{counts: make(map[string]map[int]int), cancel: cancel}
	for range 2 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				gen := sent.taken()
				name, err := call(ctx, conn)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					l.fails.Add(1)
					l.lastErr.Store(err.Error())
					continue
				}
				l.mu.Lock()
				if l.counts[name] == nil {
					l.counts[name] = make(map[int]int)
				}
				l.counts[name][gen]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// count returns the calls name answered and the calls all others did.
func (l *load) count(name string) (mine, others int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, byGen := range l.counts {
		for _, c := range byGen {
			if n == name {
				mine += c
			} else {
				others += c
			}
		}
	}
	return mine, others
}

// between returns the calls name answered that started once gRPC had taken
// in from states and before it had taken in to (to < 0: no bound).
func (l *load) between(name string, from, to int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for gen, c := range l.counts[name] {
		if gen >= from && (to < 0 || gen < to) {
			n += c
		}
	}
	return n
}

// etcdBackends starts an etcd server and returns a maker of Backends on
// it, each built from cfg (its Endpoints and Logger set here) and closed
// when the test ends.
func etcdBackends(t *testing.T, cfg etcd.Config) func() *etcd.Backend {
	srv := etcdtest.Start(t)
	return etcdBackendsOn(t, srv, cfg)
}

// etcdBackendsOn is etcdBackends on srv.
func etcdBackendsOn(t *testing.T, srv *etcdtest.Server, cfg etcd.Config) func() *etcd.Backend {
	cfg.Endpoints, cfg.Logger = srv.Endpoints(), testLogger(t)
	return func() *etcd.Backend {
		b, err := etcd.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
}

// servingEtcd is the configuration of the serving tests' Backends.
var servingEtcd = etcd.Config{
	TTL:            5 * time.Second,
	Retry:          retry.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond},
	RequestTimeout: 2 * time.Second,
}

// dialThrough opens a round-robin ClientConn through a resolver of r,
// and returns it with the builder that records the states gRPC took in.
func dialThrough(t *testing.T, r discovery.Resolver) (*grpc.ClientConn, *sentBuilder) {
	t.Helper()
	sent := &sentBuilder{Builder: newBuilder(t, r, grpcresolver.WithRetry(fastRetry))}
	conn, err := grpc.NewClient("roster:///"+service,
		grpc.WithResolvers(sent),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, sent
}

// TestDrainUnderLoadThroughEtcd: three real gRPC servers registered in a
// real etcd, a client through grpcresolver under steady load; one server
// drains (discovery.Drain: draining, 2 s, deregistered) and then stops.
// No call fails, and once gRPC has taken in a state without the draining
// server (well within the drain delay), no call started afterwards reaches
// it.
func TestDrainUnderLoadThroughEtcd(t *testing.T) {
	t.Parallel()
	newEtcd := etcdBackends(t, servingEtcd)
	client := newEtcd()
	var servers []*gatedServer
	var owners []*etcd.Backend
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"s1", "s2", "s3"} {
		g, o := startGated(t, name), newEtcd()
		if err := o.Register(ctx, g.in); err != nil {
			t.Fatal(err)
		}
		servers, owners = append(servers, g), append(owners, o)
	}
	conn, sent := dialThrough(t, client)
	waitAnswering(t, conn, 3)
	l := startLoad(conn, sent)
	defer l.stop()
	w, err := client.Watch(ctx, service)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	const delay = 2 * time.Second
	drained := make(chan error, 1)
	go func() { drained <- discovery.Drain(ctx, owners[2], delay, servers[2].in) }()
	for {
		set, err := w.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.IndexFunc(set, func(in discovery.Instance) bool { return in.ID == "s3" }); i >= 0 && set[i].Condition == discovery.ConditionDraining {
			break
		}
	}
	atVisible, _ := l.count("s3")
	left := sent.waitLeft(t, servers[2].in.Address)
	atLeft, _ := l.count("s3")
	select {
	case err := <-drained:
		t.Fatalf("the drain ended (%v) before the client's picks left s3; want within the %v delay", err, delay)
	default:
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	atGone, others := l.count("s3")
	servers[2].srv.GracefulStop()
	// More calls once it has stopped: none may fail.
	_, before := l.count("s3")
	testwait.Until(t, waitLong, "100 more calls", func() bool { _, o := l.count("s3"); return o-before >= 100 })
	l.stop()
	t.Logf("s3 answered %d calls after its drain was visible and before gRPC took in the state without it, then %d (started before) until it was deregistered %v later; the others %d calls in all; %d calls failed",
		atLeft-atVisible, atGone-atLeft, delay, others, l.fails.Load())
	if n := l.between("s3", left, -1); n != 0 {
		t.Errorf("s3 answered %d calls started after gRPC had taken in the state without it; want 0", n)
	}
	if n := l.fails.Load(); n != 0 {
		t.Errorf("%d calls failed over the drain and stop (last: %v); want 0", n, l.lastErr.Load())
	}
}

// TestFailingCheckLeavesPicksThroughEtcd: a server behind the health
// Registrar (gRPC health check, period 100 ms, thresholds 2) in a real
// etcd: its health going NOT_SERVING takes it out of a gRPC client's picks
// (the state gRPC takes in) and SERVING brings it back (a call reaches it),
// each within period x threshold + margin; no call started between the two
// reaches it.
func TestFailingCheckLeavesPicksThroughEtcd(t *testing.T) {
	t.Parallel()
	newEtcd := etcdBackends(t, servingEtcd)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain := newEtcd()
	s1, s2 := startGated(t, "s1"), startGated(t, "s2")
	if err := plain.Register(ctx, s1.in); err != nil {
		t.Fatal(err)
	}
	s2.hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	check, err := rosterhealth.DialGRPC(s2.in.Address, service)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	cfg := rosterhealth.Config{Period: 100 * time.Millisecond, SuccessThreshold: 2, FailureThreshold: 2}
	gate, err := rosterhealth.New(newEtcd(), check, cfg, rosterhealth.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	if err := gate.Register(ctx, s2.in); err != nil {
		t.Fatal(err)
	}
	conn, sent := dialThrough(t, newEtcd())
	waitAnswering(t, conn, 2)
	l := startLoad(conn, sent)
	defer l.stop()

	const margin = 5 * time.Second // a busy machine; the figures are logged
	start := time.Now()
	s2.hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	left := sent.waitLeft(t, s2.in.Address)
	out := time.Since(start)
	start = time.Now()
	s2.hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	mine, _ := l.count("s2")
	testwait.Until(t, waitLong, "s2 back in the picks", func() bool { m, _ := l.count("s2"); return m > mine })
	back := time.Since(start)
	l.stop()
	t.Logf("out of the picks %v after NOT_SERVING (period x failures = %v), back %v after SERVING (period x successes = %v); %d calls failed",
		out, 2*cfg.Period, back, 2*cfg.Period, l.fails.Load())
	if out > 2*cfg.Period+margin || back > 2*cfg.Period+margin {
		t.Errorf("out after %v, back after %v; want each within %v", out, back, 2*cfg.Period+margin)
	}
	if n := l.between("s2", left, sent.backAt(s2.in.Address, left)); n != 0 {
		t.Errorf("s2 answered %d calls started after gRPC had taken in the state without it and before one with it; want 0", n)
	}
	if n := l.fails.Load(); n != 0 {
		t.Errorf("%d calls failed (last: %v); want 0", n, l.lastErr.Load())
	}
}
