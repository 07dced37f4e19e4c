package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// forwarder is a TCP relay from a loopback listener to an upstream
// address that keeps track of its connections so that it can cut them all,
// and can pause and delay the bytes it relays. A Proxy is one forwarder;
// embedded etcd Cluster puts a Proxy in front of each member's peer port.
type forwarder struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup
	done     chan struct{} // closed by close

	mu      sync.Mutex
	conns   map[net.Conn]struct{} // open connections, both sides
	held    map[net.Conn]struct{} // accepted while holding, not yet relayed
	isDown  bool                  // refusing connections
	holding bool                  // holding new connections
	resume  chan struct{}         // non-nil while paused; closed on resume
	delay   time.Duration         // added to every chunk relayed
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// newForwarder listens on a free port of 127.0.0.1 and relays every
// connection to upstream.
func newForwarder(upstream string) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	f := &forwarder{
		ln:       ln,
		upstream: upstream,
		done:     make(chan struct{}),
		conns:    make(map[net.Conn]struct{}),
		held:     make(map[net.Conn]struct{}),
	}
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
		isDown, holding := f.isDown, f.holding && !f.closed
		if holding {
			f.held[c] = struct{}{}
		}
		f.mu.Unlock()
		switch {
		case isDown:
			_ = c.Close()
		case holding:
			f.wg.Go(func() { f.hold(c) })
		default:
			f.relay(c, nil)
		}
	}
}

// relay dials upstream for c, sends it what c sent before, and pipes the
// two both ways; when upstream refuses, c is closed.
func (f *forwarder) relay(c net.Conn, sent []byte) {
	u, err := net.Dial("tcp", f.upstream)
	if err == nil && len(sent) > 0 {
		_, err = u.Write(sent)
		if err != nil {
			_ = u.Close()
		}
	}
	if err != nil {
		_ = c.Close()
		return
	}
	if !f.track(c, u) {
		_ = c.Close()
		_ = u.Close()
		return
	}
	f.wg.Go(func() { f.pipe(c, u) })
	f.wg.Go(func() { f.pipe(u, c) })
}

// hold keeps c, accepted while holding, without an upstream connection,
// as a partitioned network leaves a connection attempt unanswered: what
// the client sends is kept, and nothing comes back. When the client gives
// up, c is closed at once, so that a long partition does not pile up
// connections; when the hold ends, c is relayed with what it sent.
func (f *forwarder) hold(c net.Conn) {
	var sent bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		sent.Write(buf[:n])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// release set the deadline to wake this read.
			f.mu.Lock()
			_, still := f.held[c]
			f.mu.Unlock()
			if !still {
				break
			}
			continue
		}
		// The client gave up, or close dropped it.
		f.mu.Lock()
		delete(f.held, c)
		f.mu.Unlock()
		_ = c.Close()
		return
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		_ = c.Close()
		return
	}
	f.relay(c, sent.Bytes())
}

// holdNew makes the forwarder hold the connections it accepts from now on,
// until release.
func (f *forwarder) holdNew() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holding = true
}

// release ends holdNew: connections held so far are relayed upstream with
// what their clients sent, and new ones are relayed at once.
func (f *forwarder) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holding = false
	for c := range f.held {
		delete(f.held, c)
		// Wakes the read in hold, which then finds c released.
		_ = c.SetReadDeadline(time.Now())
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
// the opposite pipe too. Each chunk waits out a pause and the delay in
// force when it was read, so that a pause holds traffic rather than
// dropping it, and order is kept.
func (f *forwarder) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !f.pass(time.Now()) {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	f.mu.Lock()
	delete(f.conns, src)
	delete(f.conns, dst)
	f.mu.Unlock()
	_ = src.Close()
	_ = dst.Close()
}

// pass waits until a chunk read at readAt may go on: after any pause, and
// the delay after readAt. It reports false once the forwarder is closed.
func (f *forwarder) pass(readAt time.Time) bool {
	f.mu.Lock()
	resume, delay := f.resume, f.delay
	f.mu.Unlock()
	if resume != nil {
		select {
		case <-resume:
		case <-f.done:
			return false
		}
	}
	if wait := time.Until(readAt.Add(delay)); delay > 0 && wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-f.done:
			return false
		}
	}
	return true
}

// pause holds every chunk relayed from now on, both ways, until unpause.
func (f *forwarder) pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resume == nil {
		f.resume = make(chan struct{})
	}
}

// unpause ends pause: what was held goes on.
func (f *forwarder) unpause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resume != nil {
		close(f.resume)
		f.resume = nil
	}
}

// setDelay delays every chunk read from now on by d; zero removes it.
func (f *forwarder) setDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = max(d, 0)
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

// dropConns closes every open connection, both sides, and every held one.
func (f *forwarder) dropConns() error {
	f.mu.Lock()
	conns := make([]net.Conn, 0, len(f.conns)+len(f.held))
	for c := range f.conns {
		conns = append(conns, c)
	}
	for c := range f.held {
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
		close(f.done)
		err := f.ln.Close()
		f.closeErr = errors.Join(err, f.dropConns())
		f.wg.Wait()
	})
	return f.closeErr
}
