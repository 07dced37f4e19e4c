package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// Backend is the etcd implementation of discovery.Backend and
// discovery.StatusReporter. Create it with New or NewWithClient; it is safe
// for concurrent use, and Close releases everything it started.
type Backend struct {
	cli        *clientv3.Client
	ownsClient bool
	cfg        Config
	log        hclog.Logger

	ctx       context.Context // ends on Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the Backend and its parts start
	startOnce sync.Once
	closeOnce sync.Once

	// The registrar side, one concern each. Backend records the desired
	// state in regs and pokes the keeper; regs owns the state the parts
	// share, and they reach it only through its methods.
	regs     *registrations // what to keep published, the lease, statuses (registrations.go)
	keeper   *leaseKeeper   // the lease, the keeper goroutine and its writer (lease.go, writer.go)
	restorer *restorer      // follows the keys held and restores them (restorer.go, keywatch.go)
	conn     *connMonitor   // the connection to etcd (conn.go)

	// watches holds the resolver side's shared watches: one feed per
	// watched service, each followed by one etcd watch (startFollow). It
	// has its own lock, taken with the table's held (Watch) or with no
	// lock held, never the other way round.
	watches *backendkit.FeedGroup
	skipped backendkit.SkipLog // invalid values already logged (resolver.go)
	// hist is the value of the history key read after the last
	// reconnection, shared by the watches (history.go).
	hist historyCheck
}

var (
	_ discovery.Backend          = (*Backend)(nil)
	_ discovery.RevisionResolver = (*Backend)(nil)
	_ discovery.StatusReporter   = (*Backend)(nil)
)

// New dials etcd with cfg and returns a Backend that owns the client and
// closes it on Close. It does not wait for etcd to be reachable; the first
// Register does. An invalid cfg gives an error wrapping ErrInvalidConfig.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.resolve(true)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(ClientConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %v: %w", cfg.Endpoints, connectError(cfg, err))
	}
	b := newBackend(cli, cfg)
	b.ownsClient = true
	return b, nil
}

// NewWithClient returns a Backend on a client the application owns: the
// Backend never closes it. Config fields about dialing (Endpoints,
// DialTimeout, TLS, CACertFile, CertFile, KeyFile, Username, Password,
// ReconnectDelay) are ignored; build the client with ClientConfig to get
// roster's bounded reconnect delay.
func NewWithClient(cli *clientv3.Client, cfg Config) (*Backend, error) {
	if cli == nil {
		return nil, fmt.Errorf("%w: client is nil", ErrInvalidConfig)
	}
	cfg, err := cfg.resolve(false)
	if err != nil {
		return nil, err
	}
	return newBackend(cli, cfg), nil
}

// ClientConfig returns the etcd client configuration that New uses for cfg:
// its endpoints, credentials and TLS, and gRPC dial options that bound the
// reconnect backoff to about cfg.ReconnectDelay (gRPC's own default grows
// to 120 s, which would delay recovery after a long outage by minutes).
// It does not read CACertFile, CertFile and KeyFile (New does): set TLS.
func ClientConfig(cfg Config) clientv3.Config {
	cfg = cfg.withDefaults()
	return clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// gRPC keep-alive pings notice a silently dead connection (a
		// network cut) instead of waiting for TCP to give up. 10 s is the
		// smallest interval gRPC allows.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  cfg.ReconnectDelay,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   cfg.ReconnectDelay,
				},
				MinConnectTimeout: cfg.DialTimeout,
			}),
		},
	}
}

func newBackend(cli *clientv3.Client, cfg Config) *Backend {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cli:    cli,
		cfg:    cfg,
		log:    cfg.Logger,
		regs:   newRegistrations(cfg.Logger),
		ctx:    ctx,
		cancel: cancel,
	}
	b.watches = backendkit.NewFeedGroup(b.startFollow)
	b.conn = newConnMonitor(cli, cfg.Logger, func(cause error) {
		b.watches.Each(func(_ string, f *backendkit.Feed) { f.Fail(cause) })
	})
	kick := newKick() // the keeper's, which the restorer pokes too
	b.restorer = newRestorer(cli, cfg, b.regs, kick.poke)
	b.keeper = newLeaseKeeper(ctx, &b.wg, cli, cfg, b.regs, b.conn, b.restorer, kick)
	return b
}

// Prefix returns the key prefix under which the Backend writes.
func (b *Backend) Prefix() string { return b.cfg.Prefix }

// key returns the etcd key of an instance: <Prefix>/<service>/<id>.
func (b *Backend) key(service, id string) string {
	return b.cfg.Prefix + "/" + service + "/" + id
}

// Lease returns the ID of the lease the Backend's instances are attached to,
// or 0 while it has none (before the first Register, or while it is
// re-establishing one after a failure).
func (b *Backend) Lease() clientv3.LeaseID {
	return b.keeper.current()
}

// Register implements discovery.Registrar. It returns once etcd holds the
// instance under the Backend's lease; the first call grants the lease and
// starts the keep-alive.
func (b *Backend) Register(ctx context.Context, in discovery.Instance) error {
	in, err := in.Normalize()
	if err != nil {
		return err
	}
	value, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("etcd: encode instance: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	key := in.Key()
	w := newWaiter()
	w.ctx = ctx // its claim is made only while it waits
	e := &entry{inst: in, path: b.key(in.Service, in.ID), value: string(value), claim: true}
	prev, open := b.regs.hold(e, w, b.start)
	if !open {
		return fmt.Errorf("etcd: register %v: %w", key, discovery.ErrClosed)
	}

	b.keeper.writeOrPoke(ctx)
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
	}
	return b.abandon(key, e, w, prev, ctx.Err())
}

// abandon undoes a Register whose context ended before etcd held the
// instance: a new registration is withdrawn (and deleted, if the keeper got
// as far as writing it), an update reverts to the previous value.
func (b *Backend) abandon(key discovery.Key, e *entry, w *waiter, prev *entry, cause error) error {
	what, cleanup := b.regs.abandon(e, w, prev, cause, b.restorer, b.cfg.RequestTimeout)
	switch what {
	case claimSettled:
		return w.err
	case claimReplaced:
		return fmt.Errorf("etcd: register %v: %w", key, cause)
	}
	b.keeper.poke()
	if cleanup != nil {
		// Leave nothing behind, but do not hang on an unreachable etcd.
		t := time.NewTimer(b.cfg.RequestTimeout)
		defer t.Stop()
		select {
		case <-cleanup.done:
		case <-t.C:
		case <-b.ctx.Done():
		}
	}
	return fmt.Errorf("etcd: register %v: %w", key, cause)
}

// Deregister implements discovery.Registrar: it deletes the instance's key
// now (only if this Backend still owns it) and returns once etcd has
// applied the delete.
func (b *Backend) Deregister(ctx context.Context, in discovery.Instance) error {
	if in.ID == "" {
		in.ID = discovery.IDFromAddress(in.Address)
	}
	key := in.Key()
	w := newWaiter()
	if err := b.regs.deregister(key, w, b.restorer); err != nil {
		return fmt.Errorf("etcd: deregister %v: %w", key, err)
	}

	b.keeper.poke()
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		// The keeper still deletes it when etcd answers (or Close revokes
		// the lease); until then the key may be there.
		return fmt.Errorf("etcd: deregister %v: the delete is not confirmed, the key may remain until etcd answers: %w: %w",
			key, discovery.ErrUnavailable, ctx.Err())
	}
}

// Close implements discovery.Registrar: it stops the keep-alive, revokes the
// lease (bounded by Config.RequestTimeout) so every instance leaves etcd at
// once, ends all watchers, waits for every goroutine and, for New, closes
// the client. With Config.DrainOnClose it first publishes the instances
// draining and waits, at most DrainOnClose. It is idempotent.
func (b *Backend) Close() (err error) {
	b.closeOnce.Do(func() {
		drainErr := b.drainOnClose() // Config.DrainOnClose, drain.go
		held, lease := b.regs.shut()

		b.cancel()
		b.wg.Wait()
		// The keeper has ended; stopping its writer waits for a Register
		// writing on its own goroutine, and gives the deletes never sent.
		tombs := b.keeper.stop()
		// The watch goroutines have stopped: end every watcher.
		b.watches.Close(fmt.Errorf("etcd: watch: %w", discovery.ErrClosed))

		errs := []error{drainErr} // Join skips a nil
		var revokeErr error
		if lease != 0 {
			if revokeErr = b.keeper.revoke(lease, len(held)); revokeErr != nil {
				// Name what stays behind (discovery.Registrar.Close).
				paths := make([]string, 0, len(held))
				for _, e := range held {
					paths = append(paths, e.path)
				}
				slices.Sort(paths)
				errs = append(errs, fmt.Errorf("etcd: close: could not remove %s, which stay until the lease expires: %w: %w",
					strings.Join(paths, ", "), discovery.ErrUnavailable, revokeErr))
			}
		}
		closedErr := fmt.Errorf("etcd: %w", discovery.ErrClosed)
		b.regs.finishClosed(held, closedErr)
		for path, t := range tombs {
			// The revoke removed the key, or it stays until the lease
			// expires: say so to the Deregister still waiting.
			var err error
			if revokeErr != nil {
				err = fmt.Errorf("etcd: deregister %s: key stays until its lease expires: %w", path, revokeErr)
			}
			finishAll(t.waiters, err)
		}
		b.regs.board.Close()
		if b.ownsClient {
			if err := b.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("etcd: close client: %w", err))
			}
		}
		err = errors.Join(errs...)
	})
	return err // nil on later calls: Close is idempotent
}

// start launches the keeper, the own-key watch and the connection monitor
// (conn.go).
// Called with the table locked and open (registrations.hold), so it never
// races with Close's wait.
func (b *Backend) start() {
	b.startOnce.Do(func() {
		b.keeper.start()
		b.wg.Go(func() { b.restorer.run(b.ctx) })
	})
	b.conn.start(b.ctx, &b.wg)
}

// Status implements discovery.StatusReporter.
func (b *Backend) Status(service, id string) (discovery.Status, error) {
	return b.regs.board.Status(service, id)
}

// Statuses implements discovery.StatusReporter.
func (b *Backend) Statuses() []discovery.Status { return b.regs.board.Statuses() }

// SubscribeStatus implements discovery.StatusReporter.
func (b *Backend) SubscribeStatus() discovery.StatusSubscription {
	return b.regs.board.SubscribeStatus()
}

func leaseString(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }
