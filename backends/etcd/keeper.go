package etcd

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/connectivity"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// Register, Deregister and the own-key watch record the desired state in
// b.held and b.tombs and poke the keeper, which runs the writer to make
// etcd match (lease.go, writer.go).

// errRemoved is the cause reported when a key of ours disappeared: someone
// deleted it, or etcd expired the lease it was under.
var errRemoved = errors.New("instance removed from etcd (deleted, or its lease expired)")

// errLeaseExpired is the cause reported when etcd no longer has the lease.
var errLeaseExpired = errors.New("lease expired or revoked")

// start launches the keeper, the own-key watch and the connection monitor.
// Called with b.mu held and the Backend open, so it never races with
// Close's wait.
func (b *Backend) start() {
	b.startOnce.Do(func() {
		b.wg.Add(2)
		go b.keep()
		go func() {
			defer b.wg.Done()
			b.ownKeys.run(b.ctx)
		}()
	})
	b.startMonitor()
}

// startMonitor launches the connection monitor, for the keeper and for the
// watches. Called with b.mu held and the Backend open.
func (b *Backend) startMonitor() {
	b.monitorOnce.Do(func() {
		b.wg.Add(1)
		go b.monitorConn()
	})
}

// poke wakes the keeper without blocking.
func (b *Backend) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// monitorConn follows the client's connection to etcd. Each time it
// becomes usable it signals connReady, so a waiting retry starts at once,
// and, after a failure, makes the watches resume (see resyncAll). When connecting
// fails it tells the watchers that etcd is unreachable.
func (b *Backend) monitorConn() {
	defer b.wg.Done()
	conn := b.cli.ActiveConnection()
	state := conn.GetState()
	failed := false
	for conn.WaitForStateChange(b.ctx, state) {
		state = conn.GetState()
		switch state {
		case connectivity.Ready:
			b.log.Debug("connection to etcd is usable")
			select {
			case b.connReady <- struct{}{}:
			default:
			}
			if failed {
				failed = false
				b.resyncAll()
			}
		case connectivity.TransientFailure:
			if !failed {
				failed = true
				b.log.Warn("cannot reach etcd", "endpoints", b.cli.Endpoints())
				cause := fmt.Errorf("no connection to etcd at %v", b.cli.Endpoints())
				b.watches.Each(func(_ string, f *backendkit.Feed) { f.Fail(cause) })
			}
		}
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// nodeList names the held instances' addresses for logs: all of them up to
// three, then a count.
func nodeList(held map[discovery.Key]*entry) string {
	addrs := make([]string, 0, len(held))
	for _, e := range held {
		addrs = append(addrs, e.inst.Address)
	}
	slices.Sort(addrs)
	if len(addrs) > 3 {
		return fmt.Sprintf("%s and %d more", strings.Join(addrs[:3], ", "), len(addrs)-3)
	}
	return strings.Join(addrs, ", ")
}
