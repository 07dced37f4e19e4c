package natstest

import "testing"

// Start is New for tests: it fails t if the server cannot start, and
// closes it when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("starting nats-server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing nats-server: %v", err)
		}
	})
	return s
}

// Restart is Server.Restart for tests: it fails t if the server cannot
// start again.
func Restart(t testing.TB, s *Server) {
	t.Helper()
	if err := s.Restart(); err != nil {
		t.Fatalf("restarting nats-server: %v", err)
	}
}

// StartProxy is NewProxy for tests: it fails t if the proxy cannot start,
// and closes it when t ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatalf("starting proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing proxy: %v", err)
		}
	})
	return p
}

// StartCluster is NewCluster for tests: it fails t if the cluster cannot
// start, and closes it when t ends.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c, err := NewCluster(n, opts...)
	if err != nil {
		t.Fatalf("starting a %d-node nats-server cluster: %v", n, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing nats-server cluster: %v", err)
		}
	})
	return c
}
