package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

const waitFor = 10 * time.Second

// switchable is a Check whose outcome the test sets.
type switchable struct {
	err   atomic.Pointer[error]
	calls atomic.Int64
}

func (s *switchable) set(err error) { s.err.Store(&err) }

func (s *switchable) Check(context.Context) error {
	s.calls.Add(1)
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

func newMemory(t *testing.T) *memory.Backend {
	t.Helper()
	b, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func newGate(t *testing.T, inner discovery.Registrar, c health.Check, cfg health.Config) *health.Registrar {
	t.Helper()
	r, err := health.New(inner, c, cfg, health.WithLogger(testlog.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// follower reads a watcher and fails the test on a set without the
// instance key while it is held.
type follower struct {
	t *testing.T
	w discovery.Watcher
}

// registerWatched starts a watcher of in's service on reader (bounded by
// waitFor), reads its first set, registers in through r and returns a
// follower of the watcher.
func registerWatched(t *testing.T, reader discovery.Resolver, r *health.Registrar, in discovery.Instance) follower {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	t.Cleanup(cancel)
	w, err := reader.Watch(ctx, in.Service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	return follower{t: t, w: w}
}

// until reads sets until one holds the instance id in condition c, and
// returns it; every set before must hold the instance (no removal).
func (f follower) until(id string, c discovery.Condition) discovery.Instance {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		set, err := f.w.Next(ctx)
		if errors.Is(err, discovery.ErrUnavailable) {
			continue
		}
		if err != nil {
			f.t.Fatalf("waiting for %s to be %v: %v", id, c, err)
		}
		var found *discovery.Instance
		for i := range set {
			if set[i].ID == id {
				found = &set[i]
			}
		}
		if found == nil {
			f.t.Fatalf("waiting for %s to be %v, the watcher saw a set without it: %v", id, c, set)
		}
		if found.Condition == c {
			return *found
		}
	}
}

// TestRegistrarGatesOnCheck: on the memory backend, an instance is
// published not ready until its check passes, serving once it does, not
// ready again (with the check's output as reason) after FailureThreshold
// failures, and never removed meanwhile; Close removes it and leaves the
// backend open.
func TestRegistrarGatesOnCheck(t *testing.T) {
	b := newMemory(t)
	check := &switchable{}
	check.set(errors.New("database unreachable"))
	r := newGate(t, b, check, health.Config{Period: 10 * time.Millisecond, FailureThreshold: 2})
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Weight: 50, Zone: "eu-west-1a"}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if set, err := w.Next(ctx); err != nil || len(set) != 0 {
		t.Fatalf("first Next = %v, %v", set, err)
	}
	if err := r.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	got, err := b.Resolve(ctx, "payments")
	if err != nil || len(got) != 1 || got[0].Condition != discovery.ConditionNotReady {
		t.Fatalf("Resolve once Register returned = %+v, %v; want p-1 not ready", got, err)
	}
	f := follower{t: t, w: w}
	testwait.Until(t, waitFor, "three failed checks", func() bool { return r.Result().Checks >= 3 })
	in, _ := b.Resolve(ctx, "payments")
	if in[0].Condition != discovery.ConditionNotReady || in[0].Reason != "database unreachable" || in[0].Weight != 50 || in[0].Zone != "eu-west-1a" {
		t.Errorf("after 3 failed checks: %+v; want not ready, reason the check's output, weight and zone kept", in[0])
	}

	check.set(nil)
	in[0] = f.until("p-1", discovery.ConditionServing)
	if in[0].Reason != "" {
		t.Errorf("serving with reason %q, want none", in[0].Reason)
	}
	check.set(errors.New("disk full"))
	in[0] = f.until("p-1", discovery.ConditionNotReady)
	if in[0].Reason != "disk full" {
		t.Errorf("not ready with reason %q, want the check's output", in[0].Reason)
	}
	if res := r.Result(); res.Failures < 2 || res.Err == nil {
		t.Errorf("Result() = %+v; want at least 2 failures and the error", res)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Resolve(ctx, "payments"); err != nil || len(got) != 0 {
		t.Errorf("Resolve after Close = %v, %v; want empty", got, err)
	}
	calls := check.calls.Load()
	if err := r.Register(ctx, p1); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Register after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := b.Register(ctx, p1); err != nil {
		t.Errorf("the backend after the Registrar's Close: %v; want it still open", err)
	}
	if n := check.calls.Load(); n != calls {
		t.Errorf("%d checks after Close, want 0", n-calls)
	}
}

// TestRegistrarDrainingIsLeftAlone: an instance registered draining stays
// draining whatever the check says, and discovery.Drain through the
// Registrar publishes draining, then removes the instance.
func TestRegistrarDrainingIsLeftAlone(t *testing.T) {
	b := newMemory(t)
	check := &switchable{}
	r := newGate(t, b, check, health.Config{Period: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	if err := r.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, waitFor, "p-1 serving", func() bool {
		got, _ := b.Resolve(ctx, "payments")
		return len(got) == 1 && got[0].Condition == discovery.ConditionServing
	})
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	f := follower{t: t, w: w}
	f.until("p-1", discovery.ConditionServing)
	done := make(chan error, 1)
	go func() { done <- discovery.Drain(ctx, r, 100*time.Millisecond, p1) }()
	f.until("p-1", discovery.ConditionDraining)
	calls := check.calls.Load()
	testwait.Until(t, waitFor, "more checks", func() bool { return check.calls.Load() > calls+3 })
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if got, _ := b.Resolve(ctx, "payments"); len(got) != 0 {
		t.Errorf("after Drain: %v, want empty", got)
	}

	// Registered draining: checks that pass leave it draining.
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080", Condition: discovery.ConditionDraining, Reason: "leaving"}
	if err := r.Register(ctx, p2); err != nil {
		t.Fatal(err)
	}
	calls = check.calls.Load()
	testwait.Until(t, waitFor, "more checks", func() bool { return check.calls.Load() > calls+3 })
	if got, _ := b.Resolve(ctx, "payments"); len(got) != 1 || got[0].Condition != discovery.ConditionDraining || got[0].Reason != "leaving" {
		t.Errorf("p-2 registered draining, after passing checks: %+v; want draining, reason leaving", got)
	}
}

func TestRegistrarInitialDelay(t *testing.T) {
	check := &switchable{}
	const delay = 200 * time.Millisecond
	start := time.Now()
	r := newGate(t, newMemory(t), check, health.Config{InitialDelay: delay, Period: 10 * time.Millisecond})
	testwait.Until(t, waitFor, "the first check", func() bool { return r.Result().Checks > 0 })
	if at := r.Result(); at.At.Sub(start) < delay {
		t.Errorf("first check %v after New; want no sooner than InitialDelay %v", at.At.Sub(start), delay)
	}
}

func TestRegistrarTimeoutFails(t *testing.T) {
	slow := health.CheckFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	r := newGate(t, newMemory(t), slow, health.Config{Period: 10 * time.Millisecond, Timeout: 20 * time.Millisecond})
	testwait.Until(t, waitFor, "a timed out check", func() bool { return r.Result().Checks > 0 })
	if res := r.Result(); !strings.Contains(res.Reason, "timed out after 20ms") || res.Condition != discovery.ConditionNotReady {
		t.Errorf("Result after a check past its timeout = %+v; want not ready, reason saying it timed out", res)
	}
}

func TestNewRejects(t *testing.T) {
	b := newMemory(t)
	if _, err := health.New(nil, &switchable{}, health.Config{}); !errors.Is(err, health.ErrInvalidConfig) {
		t.Errorf("nil inner: %v", err)
	}
	if _, err := health.New(b, nil, health.Config{}); !errors.Is(err, health.ErrInvalidConfig) {
		t.Errorf("nil check: %v", err)
	}
	if _, err := health.New(b, &switchable{}, health.Config{FailureThreshold: -1}); !errors.Is(err, health.ErrInvalidConfig) || !strings.Contains(err.Error(), "FailureThreshold") {
		t.Errorf("negative FailureThreshold: %v", err)
	}
	r := newGate(t, b, &switchable{}, health.Config{})
	err := r.Register(t.Context(), discovery.Instance{Service: "payments", Address: "10.0.0.7:8080", Weight: -1})
	var fe *discovery.FieldError
	if !errors.As(err, &fe) || fe.Field != "Weight" {
		t.Errorf("Register with weight -1 = %v; want a FieldError naming Weight", err)
	}
	if got, _ := b.Resolve(t.Context(), "payments"); len(got) != 0 {
		t.Errorf("an invalid Register wrote %v", got)
	}
}

// TestHTTPCheckGatesMemoryRegistration: a real HTTP server's /healthz
// drives the condition on the memory backend.
func TestHTTPCheckGatesMemoryRegistration(t *testing.T) {
	var code atomic.Int64
	code.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
		fmt.Fprintln(w, "warming up")
	}))
	defer srv.Close()
	b := newMemory(t)
	r := newGate(t, b, health.HTTP(srv.URL+"/healthz"), health.Config{Period: 10 * time.Millisecond})
	f := registerWatched(t, b, r, discovery.Instance{Service: "web", ID: "w-1", Address: srv.Listener.Addr().String()})
	in := f.until("w-1", discovery.ConditionNotReady)
	for !strings.Contains(in.Reason, "503 Service Unavailable: warming up") {
		in = f.until("w-1", discovery.ConditionNotReady)
	}
	code.Store(http.StatusOK)
	f.until("w-1", discovery.ConditionServing)
}

// TestGRPCHealthGatesRegistration is the end-to-end case, on each real
// registry: a real gRPC server with the standard health service, a real
// etcd or nats-server with JetStream, the health Registrar over its
// backend, and another client of the registry watching. NOT_SERVING takes
// the instance to not ready (reason NOT_SERVING, zone kept) within Period x
// FailureThreshold (+ margin) and no sooner than the failed checks can
// take, SERVING brings it back within Period x SuccessThreshold (+
// margin); it is never removed meanwhile.
func TestGRPCHealthGatesRegistration(t *testing.T) {
	fast := retry.Policy{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for _, tc := range []struct {
		name string
		// backends returns a maker of backends on a registry of its own.
		backends func(t *testing.T) func() discovery.Backend
	}{
		{"etcd", func(t *testing.T) func() discovery.Backend {
			srv := etcdtest.Start(t)
			return func() discovery.Backend {
				b, err := etcd.New(etcd.Config{Endpoints: srv.Endpoints(), TTL: 5 * time.Second, Retry: fast, Logger: testlog.New(t)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				return b
			}
		}},
		{"nats", func(t *testing.T) func() discovery.Backend {
			srv := natstest.Start(t)
			return func() discovery.Backend {
				b, err := nats.New(nats.Config{Endpoints: []string{srv.URL()}, Bucket: "health", TTL: 5 * time.Second, Retry: fast, Logger: testlog.New(t)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				return b
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newBackend := tc.backends(t)
			owner, reader := newBackend(), newBackend()
			addr, hs := grpcServer(t)
			hs.SetServingStatus("payments", healthpb.HealthCheckResponse_SERVING)
			check, err := health.DialGRPC(addr, "payments")
			if err != nil {
				t.Fatal(err)
			}
			defer check.Close()
			cfg := health.Config{Period: 100 * time.Millisecond, SuccessThreshold: 2, FailureThreshold: 3}
			r := newGate(t, owner, check, cfg)
			f := registerWatched(t, reader, r, discovery.Instance{Service: "payments", ID: "p-1", Address: addr, Zone: "z1"})
			f.until("p-1", discovery.ConditionServing)

			const margin = 5 * time.Second // a busy machine; the figure is logged
			start := time.Now()
			hs.SetServingStatus("payments", healthpb.HealthCheckResponse_NOT_SERVING)
			in := f.until("p-1", discovery.ConditionNotReady)
			down := time.Since(start)
			if !strings.Contains(in.Reason, "NOT_SERVING") || in.Zone != "z1" {
				t.Errorf("not ready instance %+v; want reason NOT_SERVING (the check's output) and the zone kept", in)
			}
			start = time.Now()
			hs.SetServingStatus("payments", healthpb.HealthCheckResponse_SERVING)
			f.until("p-1", discovery.ConditionServing)
			up := time.Since(start)
			t.Logf("NOT_SERVING seen by another client after %v (period x failure threshold = %v); SERVING after %v (period x success threshold = %v)",
				down, cfg.Period*3, up, cfg.Period*2)
			if down > cfg.Period*3+margin || up > cfg.Period*2+margin {
				t.Errorf("took %v to leave and %v to come back; want within %v and %v", down, up, cfg.Period*3+margin, cfg.Period*2+margin)
			}
			if down < cfg.Period*2 {
				t.Errorf("not ready %v after NOT_SERVING, sooner than %d failed checks can take", down, 3)
			}
		})
	}
}
