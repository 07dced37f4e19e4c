package etcdtest_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// proxied starts a server, a proxy in front of it and a client through the
// proxy.
func proxied(t *testing.T) (*etcdtest.Server, *etcdtest.Proxy, *clientv3.Client) {
	t.Helper()
	s := etcdtest.Start(t)
	p := etcdtest.StartProxy(t, s.Endpoints()[0])
	if p.Endpoint() == s.Endpoints()[0] {
		t.Fatal("proxy endpoint is the server's")
	}
	cfg := s.ClientConfig()
	cfg.Endpoints = []string{p.Endpoint()}
	cli, err := newClient(t, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	put(t, cli, "k", "v")
	return s, p, cli
}

func TestProxyBlackhole(t *testing.T) {
	t.Parallel()
	_, p, cli := proxied(t)

	p.Blackhole()
	p.Blackhole() // idempotent
	if _, err := get(cli, "k", 500*time.Millisecond); err == nil {
		t.Fatal("Get through a blackholed proxy succeeded")
	} else {
		t.Logf("Get while blackholed: %v", err)
	}
	p.Unblackhole()
	mustGet(t, cli, "k", "v")
}

func TestProxyDropConnections(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	p := etcdtest.StartProxy(t, s.Endpoints()[0])
	var dialed clientConns
	cfg := s.ClientConfig()
	cfg.Endpoints = []string{p.Endpoint()}
	cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(dialed.dial))
	cli, err := newClient(t, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	put(t, cli, "k", "v")

	// A kept-alive HTTP/1.1 connection through the proxy, used once so
	// that it is surely established, is closed under its reader.
	raw, err := net.Dial("tcp", p.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Write([]byte("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("health through the proxy: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health through the proxy: %s", resp.Status)
	}

	// The client's connection, the one its Put went over, is cut, not
	// just left idle: a read from it fails before the client closes it.
	// (The channel's connectivity state cannot tell: it may still say
	// CONNECTING after the Put has succeeded, as gRPC hands the READY
	// picker over before the state, and round_robin reconnects at once,
	// so READY comes back within a millisecond of the cut, before a
	// WaitForStateChange started beside DropConnections looks.)
	used := dialed.open()
	if len(used) != 1 {
		t.Fatalf("client has %d connections open through the proxy, want 1", len(used))
	}
	if err := p.DropConnections(); err != nil {
		t.Fatalf("DropConnections: %v", err)
	}

	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("read from a dropped connection succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("dropped connection still open after 5s")
	}
	select {
	case <-used[0].cut:
	case <-time.After(5 * time.Second):
		t.Fatal("client connection still open 5s after DropConnections")
	}

	// The client reconnects on its own, over a new connection.
	mustGet(t, cli, "k", "v")
	if now := dialed.open(); len(now) != 1 || now[0] == used[0] {
		t.Fatalf("after the reconnection the client has %d connections open (the dropped one among them: %v), want 1 new one",
			len(now), slices.Contains(now, used[0]))
	}
}

// clientConns records the connections a gRPC client dials, as its
// grpc.WithContextDialer, so that a test can tell whether the far side
// cut them.
type clientConns struct {
	mu    sync.Mutex
	conns []*clientConn
}

// dial dials addr over TCP and records the connection.
func (cs *clientConns) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cc := &clientConn{Conn: c, cut: make(chan struct{})}
	cs.mu.Lock()
	cs.conns = append(cs.conns, cc)
	cs.mu.Unlock()
	return cc, nil
}

// open returns the connections neither cut nor closed by the client, in
// the order they were dialled.
func (cs *clientConns) open() []*clientConn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var open []*clientConn
	for _, c := range cs.conns {
		c.mu.Lock()
		if !c.isCut && !c.closed {
			open = append(open, c)
		}
		c.mu.Unlock()
	}
	return open
}

// clientConn is a connection dialled by a client, which notes whether a
// read from it failed (the far side closed or reset it) before the client
// closed it.
type clientConn struct {
	net.Conn
	cut chan struct{} // closed when a read fails before Close

	mu     sync.Mutex
	isCut  bool
	closed bool
}

func (c *clientConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.mu.Lock()
		if !c.closed && !c.isCut {
			c.isCut = true
			close(c.cut)
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *clientConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

func TestProxyLatency(t *testing.T) {
	t.Parallel()
	_, p, cli := proxied(t)

	const d = 200 * time.Millisecond
	p.SetLatency(d)
	start := time.Now()
	mustGet(t, cli, "k", "v")
	if took := time.Since(start); took < d {
		t.Fatalf("Get with latency %v took %v", d, took)
	} else {
		t.Logf("Get with latency %v took %v", d, took)
	}

	// Bytes already delayed keep their delay: let them through before
	// measuring.
	p.SetLatency(0)
	mustGet(t, cli, "k", "v")
	start = time.Now()
	mustGet(t, cli, "k", "v")
	if took := time.Since(start); took >= d {
		t.Fatalf("Get without latency took %v", took)
	}
}

func TestProxyServerRestart(t *testing.T) {
	t.Parallel()
	s, _, cli := proxied(t)
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// Clients keep dialing the proxy while the server is down; the proxy
	// must keep accepting through all those failures.
	for range 20 {
		if _, err := get(cli, "k", 50*time.Millisecond); err == nil {
			t.Fatal("Get succeeded while the server was stopped")
		}
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	mustGet(t, cli, "k", "v")
}

func TestProxyCloseWithOpenConnections(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	p, err := etcdtest.NewProxy(s.Endpoints()[0])
	if err != nil {
		t.Fatalf("NewProxy: %v", err)
	}
	cfg := s.ClientConfig()
	cfg.Endpoints = []string{p.Endpoint()}
	cli, err := newClient(t, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	put(t, cli, "k", "v")
	p.Blackhole()

	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs with an open connection")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := get(cli, "k", 500*time.Millisecond); err == nil {
		t.Fatal("Get through a closed proxy succeeded")
	}
}

func TestNewProxyBadTarget(t *testing.T) {
	t.Parallel()
	if p, err := etcdtest.NewProxy("no-port"); err == nil {
		p.Close()
		t.Fatal("NewProxy without a port succeeded")
	}
}

func TestProxyReject(t *testing.T) {
	t.Parallel()
	s, p, cli := proxied(t)

	p.Reject()
	if _, err := get(cli, "k", 500*time.Millisecond); err == nil {
		t.Fatal("Get through a rejecting proxy succeeded")
	}
	// Nothing sent meanwhile reaches the server, then or later.
	if _, err := cli.Put(ctxTimeout(t, 300*time.Millisecond), "k", "rejected"); err == nil {
		t.Fatal("Put through a rejecting proxy succeeded")
	}
	p.Accept()
	mustGet(t, cli, "k", "v")
	mustGet(t, etcdtest.Client(t, s), "k", "v")
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
