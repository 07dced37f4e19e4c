package embedded

import "github.com/roster-sd/roster/internal/faultproxy"

// Proxy is a loopback TCP proxy between clients and one server, which can
// cut, silence and slow down the traffic between them to simulate network
// faults: see faultproxy.Proxy. It is the proxy etcd's embedded server
// uses, from a package of its own so that neither links the other's
// server.
type Proxy = faultproxy.Proxy

// NewProxy starts a proxy to target (host:port, such as Server.Addr)
// listening on a free port of 127.0.0.1 and returns once it accepts
// connections. The caller must Close it.
func NewProxy(target string) (*Proxy, error) { return faultproxy.New(target) }
