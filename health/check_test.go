package health_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/roster-sd/roster/health"
)

// grpcServer starts a real gRPC server with the standard health service on
// a free loopback port, stopped when the test ends.
func grpcServer(t *testing.T) (addr string, hs *grpchealth.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs = grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), hs
}

func checkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestGRPCCheck(t *testing.T) {
	addr, hs := grpcServer(t)
	c, err := health.DialGRPC(addr, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hs.SetServingStatus("payments", healthpb.HealthCheckResponse_SERVING)
	if err := c.Check(checkCtx(t)); err != nil {
		t.Errorf("SERVING: Check = %v, want nil", err)
	}
	hs.SetServingStatus("payments", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := c.Check(checkCtx(t)); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("NOT_SERVING: Check = %v, want an error saying NOT_SERVING", err)
	}
	other, err := health.DialGRPC(addr, "unknown-service")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Check(checkCtx(t)); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown service: Check = %v, want a NotFound error", err)
	}
}

func TestHTTPCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("method %s, want GET", r.Method)
		}
		w.WriteHeader(status)
		w.Write([]byte("database unreachable\n"))
	}))
	defer srv.Close()
	c := health.HTTP(srv.URL + "/healthz")
	for _, code := range []int{200, 204, 299} {
		status = code
		if err := c.Check(checkCtx(t)); err != nil {
			t.Errorf("status %d: Check = %v, want nil", code, err)
		}
	}
	for _, code := range []int{301, 404, 500, 503} {
		status = code
		err := c.Check(checkCtx(t))
		if err == nil || !strings.Contains(err.Error(), http.StatusText(code)) || !strings.Contains(err.Error(), "database unreachable") {
			t.Errorf("status %d: Check = %v, want an error with the status and the body", code, err)
		}
	}
}

func TestTCPCheck(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := health.TCP(addr).Check(checkCtx(t)); err != nil {
		t.Errorf("listening: Check = %v, want nil", err)
	}
	lis.Close()
	if err := health.TCP(addr).Check(checkCtx(t)); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed: Check = %v, want connection refused", err)
	}
}
