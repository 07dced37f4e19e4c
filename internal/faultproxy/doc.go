// Package faultproxy is a loopback TCP proxy that cuts, holds and slows down
// the traffic between clients and one server, to exercise fault handling
// against a real registry. It knows nothing of the protocol it relays, so
// the etcd and NATS test servers (backends/etcd/embedded and
// backends/nats/embedded) share it, and neither links the other's server.
// It does not import testing.
package faultproxy
