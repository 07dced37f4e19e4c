package embedded

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
)

// Proxy is a loopback TCP proxy between clients and one server, which can
// cut, silence and slow down the traffic between them to simulate network
// faults. Point clients at Endpoint instead of the server. It relays bytes
// and knows nothing of TLS, so a TLS client talks to the server through it
// unchanged.
//
// The faults are those of etcd's own test proxy (go.etcd.io/etcd/pkg/v3/proxy),
// with a thin relay on each side: the one in front tracks the client
// connections, which etcd's proxy cannot close, for DropConnections and
// Close; the one behind dials the target, because etcd's proxy leaves a
// client connection open and silent when that dial fails, where a client
// should see it refused.
//
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	front  *forwarder   // what clients connect to
	inner  proxy.Server // etcd's proxy, between front and back
	back   *forwarder   // relays to target
	wg     sync.WaitGroup

	mu         sync.Mutex
	blackholed bool

	closeOnce sync.Once
	closeErr  error
}

// NewProxy starts a proxy to target (host:port) listening on a free port of
// 127.0.0.1 and returns once it accepts connections. The caller must Close
// it.
func NewProxy(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("embedded: proxy target: %w", err)
	}
	back, err := newForwarder(target)
	if err != nil {
		return nil, fmt.Errorf("embedded: start proxy: %w", err)
	}
	// etcd's proxy binds the port of its From address on every interface
	// (see freePorts for the race in choosing it); only the front talks to
	// it.
	ports, err := freePorts(1)
	if err != nil {
		_ = back.close()
		return nil, err
	}
	innerAddr := loopback(ports[0])
	inner := proxy.NewServer(proxy.ServerConfig{
		Logger: zap.NewNop(),
		From:   url.URL{Scheme: "tcp", Host: innerAddr},
		To:     url.URL{Scheme: "tcp", Host: back.addr()},
	})
	select {
	case <-inner.Ready():
	case err := <-inner.Error():
		_ = inner.Close()
		_ = back.close()
		return nil, fmt.Errorf("embedded: start proxy: %w", err)
	case <-inner.Done():
		_ = back.close()
		return nil, errors.New("embedded: start proxy: closed before it was ready")
	}
	front, err := newForwarder(innerAddr)
	if err != nil {
		_ = inner.Close()
		_ = back.close()
		return nil, fmt.Errorf("embedded: start proxy: %w", err)
	}

	p := &Proxy{target: target, front: front, inner: inner, back: back}
	// etcd's proxy reports every failed dial and broken connection on a
	// buffered channel and stops accepting once 16 are pending: keep it
	// drained.
	p.wg.Go(func() {
		for {
			select {
			case <-inner.Error():
			case <-inner.Done():
				return
			}
		}
	})
	return p, nil
}

// Endpoint returns the address clients should use instead of the target,
// as host:port.
func (p *Proxy) Endpoint() string { return p.front.addr() }

// Target returns the address the proxy relays to.
func (p *Proxy) Target() string { return p.target }

// Blackhole silences the link both ways, as a network partition does: no
// byte reaches the server or the clients, yet connections stay open and
// the server keeps running. Requests and keep-alives hang until their
// deadlines. A connection opened meanwhile is accepted but goes unanswered
// and uses no connection to the server; when its client gives up, it is
// closed, so a long partition with clients that keep redialling does not
// pile up connections.
//
// Traffic is held, not discarded, so that Unblackhole heals the link the
// way TCP heals a short partition, by delivering what was sent in the
// meantime, rather than leaving corrupted gRPC connections behind.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	// etcd's proxy strands the traffic held by a first pause if paused
	// twice.
	if p.blackholed {
		return
	}
	p.blackholed = true
	p.front.holdNew()
	p.inner.PauseTx()
	p.inner.PauseRx()
}

// Unblackhole ends Blackhole: held traffic is delivered and the link works
// again.
func (p *Proxy) Unblackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = false
	p.inner.UnpauseTx()
	p.inner.UnpauseRx()
	p.front.release()
}

// Reject cuts the link the way a firewall that rejects traffic does, or a
// host whose etcd port is closed: every open connection is reset, and every
// new one is closed as soon as it is accepted, while the server keeps
// running (and so expires the leases nobody keeps alive). Unlike
// Blackhole, nothing is held for later: a request sent now never reaches
// the server. It lasts until Accept.
func (p *Proxy) Reject() { p.front.down() }

// Accept ends Reject: new connections are relayed again.
func (p *Proxy) Accept() { p.front.up() }

// SetLatency delays every chunk of data by d in each direction, so a
// request and its response take at least 2*d more. Zero or a negative d
// removes the delay. A change applies to the data read from then on; data
// already waiting keeps its delay.
func (p *Proxy) SetLatency(d time.Duration) {
	if d <= 0 {
		p.inner.UndelayTx()
		p.inner.UndelayRx()
		return
	}
	p.inner.DelayTx(d, 0)
	p.inner.DelayRx(d, 0)
}

// DropConnections closes every connection open through the proxy, as if
// the network had reset them, and returns once they are closed; clients
// must reconnect. New connections are accepted as before.
func (p *Proxy) DropConnections() error {
	if err := p.front.dropConns(); err != nil {
		return fmt.Errorf("embedded: drop connections: %w", err)
	}
	return nil
}

// Close stops accepting connections, closes the open ones and waits for
// every goroutine of the proxy. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		// Closing the relays first ends every connection of the inner
		// proxy, so that its Close, which waits for them, returns.
		errs := []error{p.front.close(), p.back.close(), p.inner.Close()}
		p.wg.Wait()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
