package etcdtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// forwarder is a plain TCP relay from a loopback listener to an upstream
// address that keeps track of its connections so that it can cut them all.
// Proxy puts one in front of etcd's test proxy, and a Cluster puts one in
// front of each member's peer port.
type forwarder struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, both sides
	isDown bool                  // refusing connections
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// newForwarder listens on a free port of 127.0.0.1 and relays every
// connection to upstream.
func newForwarder(upstream string) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("etcdtest: listen: %w", err)
	}
	f := &forwarder{ln: ln, upstream: upstream, conns: make(map[net.Conn]struct{})}
	f.wg.Go(f.serve)
	return f, nil
}

// addr returns the host:port the forwarder listens on.
func (f *forwarder) addr() string { return f.ln.Addr().String() }

// serve accepts connections until the listener is closed and relays each
// one to upstream; when upstream refuses, the accepted connection is closed.
func (f *forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient accept error; keep serving
		}
		f.mu.Lock()
		isDown := f.isDown
		f.mu.Unlock()
		if isDown {
			_ = c.Close()
			continue
		}
		u, err := net.Dial("tcp", f.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !f.track(c, u) {
			_ = c.Close()
			_ = u.Close()
			continue
		}
		f.wg.Go(func() { f.pipe(c, u) })
		f.wg.Go(func() { f.pipe(u, c) })
	}
}

// track records a relayed connection pair, or reports false once the
// forwarder is closed or down.
func (f *forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.isDown {
		return false
	}
	for _, c := range conns {
		f.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst until either fails, then closes both, which ends
// the opposite pipe too.
func (f *forwarder) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	f.mu.Lock()
	delete(f.conns, src)
	delete(f.conns, dst)
	f.mu.Unlock()
	_ = src.Close()
	_ = dst.Close()
}

// down makes the forwarder close every open connection and every new one
// at once, as if its upstream were unreachable, until up.
func (f *forwarder) down() {
	f.mu.Lock()
	f.isDown = true
	f.mu.Unlock()
	_ = f.dropConns()
}

// up ends down.
func (f *forwarder) up() {
	f.mu.Lock()
	f.isDown = false
	f.mu.Unlock()
}

// dropConns closes every open connection, both sides.
func (f *forwarder) dropConns() error {
	f.mu.Lock()
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close stops accepting, closes every connection and waits for the
// forwarder's goroutines. It is safe to call more than once.
func (f *forwarder) close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		err := f.ln.Close()
		f.closeErr = errors.Join(err, f.dropConns())
		f.wg.Wait()
	})
	return f.closeErr
}
