package fleetsim

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// relayDialTimeout bounds a relay's connection to its upstream.
const relayDialTimeout = 5 * time.Second

// natsRelay is one simulated process's relay in front of one NATS node
// (or the node's fault proxy): it counts each connection the process
// makes as a dial, and each protocol operation the process sends as a
// request (natsCounter), then passes the bytes on unchanged.
type natsRelay struct {
	ln       net.Listener
	upstream string
	pt       *procTraffic

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// newNATSRelay listens on a free loopback port and relays to upstream.
func newNATSRelay(upstream string, pt *procTraffic) (*natsRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &natsRelay{ln: ln, upstream: upstream, pt: pt, conns: make(map[net.Conn]struct{})}
	r.wg.Go(r.serve)
	return r, nil
}

// Addr is the relay's host:port.
func (r *natsRelay) Addr() string { return r.ln.Addr().String() }

// serve accepts until Close. A failed Accept that is not the listener's
// closing (too many open files, at a thousand processes) is waited out,
// as net/http's server does: ending the loop would leave the process
// unable ever to connect again.
func (r *natsRelay) serve() {
	var backoff time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		r.pt.dial()
		r.wg.Go(func() { r.relay(c) })
	}
}

// track adds conns to the open ones, or reports false once closed.
func (r *natsRelay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, c := range conns {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *natsRelay) untrack(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		delete(r.conns, c)
	}
}

func (r *natsRelay) relay(c net.Conn) {
	defer c.Close()
	if !r.track(c) {
		return
	}
	defer r.untrack(c)
	u, err := net.DialTimeout("tcp", r.upstream, relayDialTimeout)
	if err != nil {
		return // the process sees its connection closed, as if refused
	}
	defer u.Close()
	if !r.track(u) {
		return
	}
	defer r.untrack(u)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Through plain Reader and Writer, so that the copy does not
		// splice through a pipe: two more descriptors per connection.
		_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{u}, make([]byte, 32<<10))
		_ = c.Close()
	}()
	counter := natsCounter{pt: r.pt}
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			counter.feed(buf[:n])
			if _, werr := u.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = u.Close()
	<-done
}

// Close stops the relay and closes its connections.
func (r *natsRelay) Close() error {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// natsCounter reads the operations a NATS client sends (CONNECT, PUB,
// HPUB, SUB, UNSUB, PING, PONG, each a line, PUB and HPUB followed by a
// payload of the size the line gives) and counts each publication and
// subscription as a request, named after its subject's kind (never the
// key: names stay bounded). Pings and the CONNECT are not requests.
type natsCounter struct {
	pt   *procTraffic
	line []byte
	skip int // payload bytes still to pass over
}

// maxLine bounds a line kept while its end has not arrived.
const maxLine = 64 << 10

func (c *natsCounter) feed(p []byte) {
	for len(p) > 0 {
		if c.skip > 0 {
			n := min(c.skip, len(p))
			c.skip -= n
			p = p[n:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(c.line)+len(p) <= maxLine {
				c.line = append(c.line, p...)
			}
			return
		}
		c.line = append(c.line, p[:i]...)
		p = p[i+1:]
		c.op(string(bytes.TrimRight(c.line, "\r")))
		c.line = c.line[:0]
	}
}

// op counts one operation line, and sets the payload to skip.
func (c *natsCounter) op(line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	switch strings.ToUpper(f[0]) {
	case "PUB", "HPUB":
		if len(f) < 3 {
			return
		}
		size, err := strconv.Atoi(f[len(f)-1])
		if err != nil || size < 0 {
			return
		}
		c.skip = size + 2 // the payload and its CRLF
		method, read := natsMethod(f[1])
		c.pt.count(method, read)
	case "SUB":
		c.pt.count("SUB", false)
	case "UNSUB":
		c.pt.count("UNSUB", false)
	}
}

// natsMethod names a publication by its subject's kind: a key-value
// write ("KV write": a registration, a renewal, a removal), a JetStream
// API call ("JS STREAM.INFO", "JS CONSUMER.CREATE", "JS DIRECT.GET"...),
// an acknowledgement or flow control reply, or another publication
// ("other"). A consumer's creation is a read: it delivers the last value
// of every key it covers.
func natsMethod(subject string) (method string, read bool) {
	t := strings.Split(subject, ".")
	switch {
	case len(t) >= 3 && t[0] == "$KV":
		return "KV write", false
	case len(t) >= 4 && t[0] == "$JS" && t[1] == "API":
		name := t[2] + "." + t[3]
		if t[2] == "STREAM" && t[3] == "MSG" && len(t) >= 5 {
			name = "STREAM.MSG." + t[4]
		}
		return "JS " + name, t[2] == "CONSUMER" && t[3] == "CREATE"
	case len(t) >= 2 && t[0] == "$JS" && t[1] == "ACK":
		return "JS ACK", false
	case len(t) >= 2 && t[0] == "$JS" && t[1] == "FC":
		return "JS flow control", false
	}
	return "other", false
}
