package main

import (
	"fmt"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
)

// registry is what the commands need of a backend: the discovery
// contracts, with its status, and the operator's view of the whole
// registry (discovery.OperatorView), which ls, deregister and ui use
// alone, so that they work on any backend that implements it.
type registry interface {
	discovery.Backend
	discovery.StatusReporter
	discovery.OperatorView
}

// holderOf describes what keeps r's registrations alive right now, for
// register's lines ("lease 694d9b4c3e6e2a0f"), or "" when nothing is
// worth naming (NATS renews each key).
func holderOf(r registry) string {
	if b, ok := r.(*etcd.Backend); ok {
		if lease := b.Lease(); lease != 0 {
			return fmt.Sprintf("lease %x", int64(lease))
		}
	}
	return ""
}
