// Package freeport finds free TCP ports on the loopback interface for the
// embedded test servers (etcd's and NATS's), which must know their ports,
// and their peers', before they start.
package freeport

import (
	"errors"
	"fmt"
	"net"
)

// Reserve returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. It binds them all at once (so they differ from each other),
// reads their numbers and releases them for a server to bind.
//
// Between the release and the server's bind another process could take a port.
// That window is a few milliseconds and the kernel seldom hands a port it
// just handed out to someone else at once, so the race is rare; when it
// happens, a server fails to start with "address already in use" rather than
// misbehaving, and its caller can start it again on fresh ports.
func Reserve(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: find a free port: %w", err)
		}
		lns = append(lns, ln)
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("freeport: find a free port: not a TCP address")
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}
