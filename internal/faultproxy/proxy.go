package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a loopback TCP proxy between clients and one server, which can
// cut, silence and slow down the traffic between them to simulate network
// faults. Point clients at Endpoint instead of the server. It relays bytes
// and knows nothing of TLS, so a TLS client talks to the server through it
// unchanged. A client connection whose dial to the server fails is closed,
// so the client sees it refused.
//
// It is one relay, in the spirit of etcd's test proxy
// (go.etcd.io/etcd/pkg/v3/proxy) but a single hop, so that a fleet of
// clients behind it spends little CPU in the proxy. Its methods are safe
// for concurrent use.
type Proxy struct {
	target string
	relay  *forwarder

	mu         sync.Mutex
	blackholed bool
}

// New starts a proxy to target (host:port) listening on a free port of
// 127.0.0.1 and returns once it accepts connections. The caller must Close
// it.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: proxy target: %w", err)
	}
	relay, err := newForwarder(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: start proxy: %w", err)
	}
	return &Proxy{target: target, relay: relay}, nil
}

// Endpoint returns the address clients should use instead of the target,
// as host:port.
func (p *Proxy) Endpoint() string { return p.relay.addr() }

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
// meantime, rather than leaving corrupted connections (gRPC, NATS) behind.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blackholed {
		return
	}
	p.blackholed = true
	p.relay.holdNew()
	p.relay.pause()
}

// Unblackhole ends Blackhole: held traffic is delivered and the link works
// again.
func (p *Proxy) Unblackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackholed = false
	p.relay.unpause()
	p.relay.release()
}

// Reject cuts the link the way a firewall that rejects traffic does, or a
// host whose server port is closed: every open connection is reset, and every
// new one is closed as soon as it is accepted, while the server keeps
// running (and so expires the leases and TTLs nobody renews). Unlike
// Blackhole, nothing is held for later: a request sent now never reaches
// the server. It lasts until Accept.
func (p *Proxy) Reject() { p.relay.down() }

// Accept ends Reject: new connections are relayed again.
func (p *Proxy) Accept() { p.relay.up() }

// SetLatency delays every chunk of data by d in each direction, so a
// request and its response take at least 2*d more. Zero or a negative d
// removes the delay. A change applies to the data read from then on; data
// already waiting keeps its delay.
func (p *Proxy) SetLatency(d time.Duration) { p.relay.setDelay(d) }

// DropConnections closes every connection open through the proxy, as if
// the network had reset them, and returns once they are closed; clients
// must reconnect. New connections are accepted as before.
func (p *Proxy) DropConnections() error {
	if err := p.relay.dropConns(); err != nil {
		return fmt.Errorf("faultproxy: drop connections: %w", err)
	}
	return nil
}

// Close stops accepting connections, closes the open ones and waits for
// every goroutine of the proxy. It is safe to call more than once.
func (p *Proxy) Close() error { return p.relay.close() }
