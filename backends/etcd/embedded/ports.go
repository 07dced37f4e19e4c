package embedded

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. It binds them all at once (so they differ from each other),
// reads their numbers and releases them for etcd to bind.
//
// Between the release and etcd's bind another process could take a port.
// That window is a few milliseconds and the kernel seldom hands a port it
// just handed out to someone else at once, so the race is rare; when it
// happens, etcd fails to start with "address already in use" rather than
// misbehaving, and New and NewCluster start again on fresh ports (see
// withFreshPorts). Restart, which binds the same ports again, cannot.
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
			return nil, fmt.Errorf("embedded: find a free port: %w", err)
		}
		lns = append(lns, ln)
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("embedded: find a free port: not a TCP address")
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}

// portAttempts is how many times New and NewCluster start etcd on fresh
// ports when a port freePorts picked was taken before etcd bound it.
const portAttempts = 3

// withFreshPorts runs start, which picks its ports with freePorts, up to
// portAttempts times while it fails on a port taken meanwhile (by another
// test process, or by a listener of this one). A data directory given with
// WithDataDir may hold what a failed start wrote, so then start runs once.
func withFreshPorts[T any](o options, start func() (T, error)) (T, error) {
	v, err := start()
	for range portAttempts - 1 {
		if err == nil || o.dataDir != "" || !portTaken(err) {
			break
		}
		v, err = start()
	}
	return v, err
}

// portTaken reports whether err is a failure to bind a port in use.
func portTaken(err error) bool {
	// etcd does not always wrap the bind error; its text says it.
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
