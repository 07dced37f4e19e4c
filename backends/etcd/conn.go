package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// connMonitor follows the client's connection to etcd for the Backend.
// Each time the connection becomes usable it signals ready, so that a
// waiting retry starts at once; when connecting fails it reports the
// outage once (onFail); when the connection is back after a failure it
// closes the channel reconnections returned, so that the service watches
// resume. One goroutine, started on first use, runs it until its context
// ends.
type connMonitor struct {
	cli    *clientv3.Client
	log    hclog.Logger
	onFail func(cause error) // called from the monitor's goroutine

	ready chan struct{} // capacity 1

	once sync.Once
	back backendkit.Broadcast // a change at each return after a failure
}

func newConnMonitor(cli *clientv3.Client, log hclog.Logger, onFail func(error)) *connMonitor {
	return &connMonitor{
		cli:    cli,
		log:    log,
		onFail: onFail,
		ready:  make(chan struct{}, 1),
	}
}

// start runs the monitor in a goroutine of wg until ctx ends, unless it
// runs already.
func (m *connMonitor) start(ctx context.Context, wg *sync.WaitGroup) {
	m.once.Do(func() { wg.Go(func() { m.run(ctx) }) })
}

// reconnections returns a channel that is closed the next time the
// connection comes back after a failure.
func (m *connMonitor) reconnections() <-chan struct{} { return m.back.Changed() }

// generation returns how many times the connection has come back after a
// failure.
func (m *connMonitor) generation() uint64 { return m.back.Count() }

func (m *connMonitor) run(ctx context.Context) {
	conn := m.cli.ActiveConnection()
	state := conn.GetState()
	failed := false
	for conn.WaitForStateChange(ctx, state) {
		state = conn.GetState()
		switch state {
		case connectivity.Ready:
			m.log.Debug("connection to etcd is usable")
			select {
			case m.ready <- struct{}{}:
			default:
			}
			if failed {
				failed = false
				m.back.Notify()
			}
		case connectivity.TransientFailure:
			if !failed {
				failed = true
				m.log.Warn("cannot reach etcd", "endpoints", m.cli.Endpoints())
				m.onFail(fmt.Errorf("no connection to etcd at %v", m.cli.Endpoints()))
			}
		}
	}
}

// explain says why a request failed when there is no connection to etcd:
// a bare deadline would not. Such an error also wraps
// discovery.ErrUnavailable, so that status causes classify alike across
// backends.
func (m *connMonitor) explain(err error) error {
	if m.cli.ActiveConnection().GetState() != connectivity.Ready {
		return backendkit.Mark(fmt.Errorf("no connection to etcd at %v: %w", m.cli.Endpoints(), err), discovery.ErrUnavailable)
	}
	return err
}

// errNotConnected is why an attempt sent nothing: no usable connection
// came within its time.
var errNotConnected = errors.New("no usable connection")

// waitUsable waits until the connection to etcd is usable, for at most d,
// asking an idle connection to connect. A request's own timeout then runs
// from when it can be sent: a deadline that started before the connection
// came back would expire while etcd, just returned, elects a leader or
// answers a fleet that returned with it, and the request would be sent
// again. Waiting sends nothing.
func (m *connMonitor) waitUsable(ctx context.Context, d time.Duration) error {
	conn := m.cli.ActiveConnection()
	state := conn.GetState()
	if state == connectivity.Ready {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			conn.Connect()
		case connectivity.Shutdown:
			return fmt.Errorf("%w: the client is closed", errNotConnected)
		}
		if !conn.WaitForStateChange(ctx, state) {
			if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%w within %v: %w", errNotConnected, d, err)
			}
			return ctx.Err()
		}
		state = conn.GetState()
	}
}
