package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/envconfig"
)

func (b *Backend) connectOptions() ([]natsgo.Option, error) {
	c := b.cfg
	opts := []natsgo.Option{
		natsgo.Name("roster"),
		natsgo.Timeout(c.DialTimeout),
		natsgo.MaxReconnects(-1),
		natsgo.CustomReconnectDelay(c.reconnectWait),
		// Fail a request at once while disconnected rather than buffer it.
		natsgo.ReconnectBufSize(-1),
		// Own-key subscriptions see other processes' writes only.
		natsgo.NoEcho(),
		// A link that goes silent (a partition rather than a reset) is
		// noticed after between five and six pings a third of the TTL
		// apart without a PONG (about two TTLs), rather than after the
		// client's default of minutes, so that the Backend reports it and
		// reconnects. Not sooner: a loaded machine or a stalled process
		// delays PONGs by a second or more, and a connection dropped for
		// that costs every watch and fails every request until it is
		// made again (the renewals, which fail by RequestTimeout, report
		// a silent link meanwhile).
		natsgo.PingInterval(c.TTL / 3),
		natsgo.MaxPingsOutstanding(5),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if b.conn.set(false, err) && !b.closing.Load() {
				b.log.Warn("cannot reach NATS", "endpoints", envconfig.Redact(strings.Join(c.Endpoints, ",")), "error", err)
			}
		}),
		// ConnectedUrlRedacted hides a password, not a token
		// (nats://token@host): Redact hides both.
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			if b.conn.set(true, nil) {
				b.log.Info("connection to NATS is usable", "server", envconfig.Redact(nc.ConnectedUrlRedacted()))
			}
		}),
		// The first connection, when New could not make it.
		natsgo.ConnectHandler(func(nc *natsgo.Conn) {
			if b.conn.set(true, nil) {
				b.log.Info("connection to NATS is usable", "server", envconfig.Redact(nc.ConnectedUrlRedacted()))
			}
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			b.log.Debug("asynchronous NATS error", "error", err)
		}),
	}
	if c.TLS != nil {
		opts = append(opts, natsgo.Secure(c.TLS))
	}
	switch {
	case c.Username != "":
		opts = append(opts, natsgo.UserInfo(c.Username, c.Password))
	case c.Token != "":
		opts = append(opts, natsgo.Token(c.Token))
	case c.CredentialsFile != "":
		opts = append(opts, natsgo.UserCredentials(c.CredentialsFile))
	case c.NKeySeedFile != "":
		o, err := natsgo.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NKeySeedFile: %w", ErrInvalidConfig, err)
		}
		opts = append(opts, o)
	}
	return opts, nil
}

// reconnectRoundsPerServer bounds the wait between two rounds of
// connection attempts: at most this many ReconnectDelays per endpoint.
const reconnectRoundsPerServer = 4

// reconnectWait is the client's wait after its round-th round of
// connection attempts (one to each server) found no server:
// ReconnectDelay, doubling each round up to reconnectRoundsPerServer
// ReconnectDelays per endpoint, plus up to 20% of jitter. A fleet retrying
// an unreachable cluster thus makes about one connection attempt per
// process per second at the default (three endpoints every 3 to 3.6 s),
// where a fixed 250 ms made 8 (roster bench --restart, issue #21); the
// first rounds stay quick, for a node that restarts or a failover.
func (c Config) reconnectWait(round int) time.Duration {
	limit := c.ReconnectDelay * time.Duration(reconnectRoundsPerServer*max(1, len(c.Endpoints)))
	d := c.ReconnectDelay
	for i := 1; i < round && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d + rand.N(d/5+1)
}

// slow reports whether err, from opening the bucket, says only that the
// server did not answer in time.
func slow(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsgo.ErrTimeout)
}

// unreachable reports whether err, from connecting, says that no server
// could be reached or none answered (a refused or reset connection, a
// timeout, a proxy that closes it at once), rather than that one refused
// the client (TLS, authentication).
func unreachable(err error) bool {
	var netErr net.Error
	return errors.Is(err, natsgo.ErrNoServers) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// connected returns an error wrapping discovery.ErrUnavailable while the
// connection is down, so that a call fails at once rather than wait for
// its context.
func (b *Backend) connected() error {
	up, _, cause := b.conn.get()
	if up {
		return nil
	}
	if cause == nil {
		cause = errDisconnected
	}
	return fmt.Errorf("%w: %w", discovery.ErrUnavailable, cause)
}

// connState follows the connection: up or down, and a channel closed at
// every change; and the elections of the bucket stream's leader.
type connState struct {
	mu      sync.Mutex
	up      bool
	err     error
	changes backendkit.Broadcast
	// elected is notified when the bucket's stream elects a leader (the
	// server's advisory): JetStream answers for the bucket again.
	elected backendkit.Broadcast
	// wake is notified at every change of the connection and at every
	// election: the moments a failed attempt is worth making again at
	// once.
	wake backendkit.Broadcast
}

func newConnState() *connState { return &connState{up: true} }

// set records the connection's state and reports whether it changed.
func (c *connState) set(up bool, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == up {
		return false
	}
	c.up, c.err = up, err
	c.changes.Notify()
	c.wake.Notify()
	return true
}

// leaderElected records that the bucket's stream has elected a leader.
func (c *connState) leaderElected() {
	c.elected.Notify()
	c.wake.Notify()
}

// get returns whether the connection is up, a channel closed at the next
// change, and why it went down.
func (c *connState) get() (up bool, changed <-chan struct{}, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up, c.changes.Changed(), c.err
}
