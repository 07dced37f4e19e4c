package etcdtest

import (
	"errors"
	"fmt"
	"net"
)

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. It binds them all at once (so they differ from each other),
// reads their numbers and releases them for etcd to bind.
//
// Between the release and etcd's bind another process could take a port.
// That window is a few milliseconds and the kernel seldom hands a port it
// just handed out to someone else at once, so the race is rare; when it
// happens, etcd fails to start with "address already in use" rather than
// misbehaving. The same holds for Restart, which binds the same ports
// again.
func freePorts(n int) ([]int, error) {
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
			return nil, fmt.Errorf("etcdtest: find a free port: %w", err)
		}
		lns = append(lns, ln)
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("etcdtest: find a free port: not a TCP address")
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}
