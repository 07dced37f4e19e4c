package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Check probes the local server once. It returns nil when the server
// passes, or an error whose message says why not: it becomes the
// instance's Reason (through discovery.SanitizeReason). The context
// carries Config.Timeout.
type Check interface {
	Check(ctx context.Context) error
}

// CheckFunc adapts a function to Check.
type CheckFunc func(ctx context.Context) error

// Check calls f.
func (f CheckFunc) Check(ctx context.Context) error { return f(ctx) }

// GRPC returns a Check that calls the standard gRPC health service
// (grpc.health.v1.Health/Check) on conn for service ("" asks about the
// server as a whole). It passes when the status is SERVING. The caller
// owns conn.
func GRPC(conn grpc.ClientConnInterface, service string) Check {
	return grpcCheck{client: healthpb.NewHealthClient(conn), service: service}
}

type grpcCheck struct {
	client  healthpb.HealthClient
	service string
}

func (c grpcCheck) Check(ctx context.Context) error {
	resp, err := c.client.Check(ctx, &healthpb.HealthCheckRequest{Service: c.service})
	if err != nil {
		return fmt.Errorf("grpc health: %w", err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health: %v", s)
	}
	return nil
}

// GRPCCheck is a gRPC health Check with a connection of its own, from
// DialGRPC. Close releases the connection.
type GRPCCheck struct {
	check Check
	conn  *grpc.ClientConn
}

// Check implements Check.
func (c *GRPCCheck) Check(ctx context.Context) error { return c.check.Check(ctx) }

// DialGRPC returns a GRPC check on a connection of its own to target
// (such as "127.0.0.1:9090"), without TLS unless opts say otherwise. The
// connection is made on the first check; Close it when done.
func DialGRPC(target, service string, opts ...grpc.DialOption) (*GRPCCheck, error) {
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("health: grpc check of %q: %w", target, err)
	}
	return &GRPCCheck{check: GRPC(conn, service), conn: conn}, nil
}

// Close closes the check's connection.
func (c *GRPCCheck) Close() error { return c.conn.Close() }

// maxBodyInReason bounds how much of a failing HTTP response's body the
// reason quotes.
const maxBodyInReason = 128

// HTTP returns a Check that sends GET url and passes on a 2xx status. A
// failing status's reason quotes the start of the body. Connections are
// not kept between checks, so the check leaves no goroutine behind.
func HTTP(url string) Check {
	return httpCheck{url: url, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

type httpCheck struct {
	url    string
	client *http.Client
}

func (c httpCheck) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("http GET %s: %w", c.url, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err // *url.Error says GET and the URL
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodyInReason))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("http GET %s: %s", c.url, resp.Status)
		if b := strings.TrimSpace(string(body)); b != "" {
			msg += ": " + b
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// TCP returns a Check that passes when a TCP connection to addr opens.
func TCP(addr string) Check {
	return CheckFunc(func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp connect: %w", err)
		}
		return conn.Close()
	})
}
