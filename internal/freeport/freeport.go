// Package freeport finds free TCP ports on the loopback interface for the
// embedded test servers (etcd's and NATS's), which must know their ports,
// and their peers', before they start.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Ports are picked below the kernel's range of ephemeral ports (the local
// ports it gives outgoing connections), from lowestPort up. A port handed
// out by listening on port 0 lies inside that range, so while a server that
// had it is stopped (a member restarted by a fault test), any client's
// outgoing connection may be given it, and the server cannot bind it again
// ("address already in use"): seen in fault tests that restart members
// while other tests open connections. Below the range only another
// listener can take it.
const (
	lowestPort           = 10000
	defaultEphemeralLow  = 32768 // Linux's default net.ipv4.ip_local_port_range
	ephemeralRangeSource = "/proc/sys/net/ipv4/ip_local_port_range"
	triesPerPort         = 200
)

// Reserve returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago. It binds them all at once (so they differ from each other),
// reads their numbers and releases them for a server to bind. They lie
// below the kernel's ephemeral range where that range leaves room, so that
// no outgoing connection is given one of them.
//
// Between the release and the server's bind another process could take a
// port; when it happens, a server fails to start with "address already in
// use" rather than misbehaving, and its caller can start it again on fresh
// ports.
func Reserve(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	low, high := lowestPort, ephemeralLow()
	ports := make([]int, 0, n)
	for range n {
		ln, err := listenBelow(low, high)
		if err != nil {
			return nil, err
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

// listenBelow listens on a random free port in [low, high), or on any
// free port if the range is empty or none of triesPerPort picks is free.
func listenBelow(low, high int) (net.Listener, error) {
	if high-low >= 1000 {
		for range triesPerPort {
			port := low + rand.IntN(high-low)
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err == nil {
				return ln, nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("freeport: find a free port: %w", err)
	}
	return ln, nil
}

// ephemeralLow returns the lowest port of the kernel's ephemeral range,
// or Linux's default where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile(ephemeralRangeSource)
	if err != nil {
		return defaultEphemeralLow
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return defaultEphemeralLow
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= 0 {
		return defaultEphemeralLow
	}
	return low
}
