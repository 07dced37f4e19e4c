package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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
	leases     pb.LeaseClient // for grants that name their lease ID
	ownsClient bool
	cfg        Config
	log        hclog.Logger
	board      *backendkit.StatusBoard
	ttl        int64 // lease TTL in seconds

	ctx       context.Context // ends on Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error

	kick chan struct{} // wakes the keeper; capacity 1
	// writeMu makes one goroutine at a time the writer of the Backend's
	// keys: the keeper, or a Register that finds the Backend healthy and
	// nobody writing, which then writes itself instead of handing over.
	writeMu sync.Mutex
	conn    *connMonitor // the connection to etcd (conn.go)

	// ownKeys follows the keys this Backend holds, to restore what others
	// delete; its goroutine starts with the keeper.
	ownKeys *keyWatch

	// regs is the table of what the Backend keeps published; its mutex
	// also guards the lease fields below.
	regs *registrations

	lease   clientv3.LeaseID   // the live lease; 0 while (re-)establishing
	granted clientv3.LeaseID   // the newest lease granted, which Close revokes
	ours    []clientv3.LeaseID // recent leases of ours, to tell our writes from others'
	// announce asks the writer to log "registered" once every held
	// instance is written under a newly granted lease.
	announce bool

	// watches holds the resolver side's shared watches: one feed per
	// watched service, each followed by one etcd watch (startFollow). It
	// has its own lock, taken with b.regs.mu held or with no lock held, never
	// the other way round.
	watches *backendkit.FeedGroup
}

var (
	_ discovery.Backend        = (*Backend)(nil)
	_ discovery.StatusReporter = (*Backend)(nil)
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
		return nil, fmt.Errorf("etcd: connect to %v: %w", cfg.Endpoints, err)
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
		leases: pb.NewLeaseClient(cli.ActiveConnection()),
		cfg:    cfg,
		log:    cfg.Logger,
		regs:   newRegistrations(cfg.Logger),
		ttl:    int64(cfg.TTL / time.Second),
		ctx:    ctx,
		cancel: cancel,
		kick:   make(chan struct{}, 1),
	}
	b.watches = backendkit.NewFeedGroup(b.startFollow)
	b.ownKeys = newKeyWatch(cli, cfg.Retry, cfg.Logger, b.observe, b.recheck)
	b.conn = newConnMonitor(cli, cfg.Logger, func(cause error) {
		b.watches.Each(func(_ string, f *backendkit.Feed) { f.Fail(cause) })
	})
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
	b.regs.mu.Lock()
	defer b.regs.mu.Unlock()
	return b.lease
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
	b.regs.mu.Lock()
	if b.regs.closed {
		b.regs.mu.Unlock()
		return fmt.Errorf("etcd: register %v: %w", key, discovery.ErrClosed)
	}
	e := &entry{inst: in, path: b.key(in.Service, in.ID), value: string(value), claim: true}
	prev := b.regs.held[key]
	if prev != nil {
		// An update: the earlier calls still waiting are satisfied by
		// this newer value.
		e.waiters, e.rev, e.written, e.state = prev.waiters, prev.rev, prev.written, prev.state
		prev.waiters = nil
	} else {
		b.regs.reportLocked(e, discovery.Status{State: discovery.StateRegistering})
	}
	e.waiters = append(e.waiters, w)
	if t := b.regs.tombs[e.path]; t != nil {
		// Re-registered before the delete went out: the delete is moot.
		finishAll(t.waiters, nil)
		delete(b.regs.tombs, e.path)
	}
	b.regs.held[key] = e
	b.regs.byPath[e.path] = key
	b.regs.markDirtyLocked(e)
	b.start()
	b.regs.mu.Unlock()

	b.writeOrPoke(ctx)
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
	b.regs.mu.Lock()
	select {
	case <-w.done: // the keeper finished just now
		b.regs.mu.Unlock()
		return w.err
	default:
	}
	e.waiters = removeWaiter(e.waiters, w)
	if b.regs.held[key] != e {
		// A later Register replaced it; that call owns the outcome.
		b.regs.mu.Unlock()
		return fmt.Errorf("etcd: register %v: %w", key, cause)
	}
	var cleanup *waiter
	if prev != nil {
		// Put the previous value back.
		prev.waiters, prev.claim = e.waiters, true
		e.waiters = nil
		b.regs.held[key] = prev
		b.regs.markDirtyLocked(prev)
	} else {
		b.dropLocked(key, e)
		finishAll(e.waiters, fmt.Errorf("etcd: register %v: %w", key, cause))
		e.waiters = nil
		if e.tried {
			// A write of it went out: delete it.
			cleanup = newWaiter()
			b.regs.tombs[e.path] = &tomb{waiters: []*waiter{cleanup}}
		}
	}
	b.regs.mu.Unlock()
	b.poke()
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

// writeOrPoke writes the pending changes on the caller's goroutine when
// the Backend has a live lease and no other writer, saving the hand-over to
// the keeper; otherwise it wakes the keeper.
func (b *Backend) writeOrPoke(ctx context.Context) {
	if b.writeMu.TryLock() {
		lease := b.Lease()
		if lease != 0 {
			wctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
			err := b.syncLocked(wctx, lease)
			cancel()
			b.writeMu.Unlock()
			if err == nil && !b.regs.pending() {
				return
			}
		} else {
			b.writeMu.Unlock()
		}
	}
	b.poke()
}

// dropLocked stops keeping e published: it is deregistered.
func (b *Backend) dropLocked(key discovery.Key, e *entry) {
	delete(b.regs.held, key)
	delete(b.regs.dirty, key)
	delete(b.regs.byPath, e.path)
	b.ownKeys.remove(e.path)
	b.regs.reportLocked(e, discovery.Status{State: discovery.StateDeregistered})
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
	b.regs.mu.Lock()
	if b.regs.closed {
		b.regs.mu.Unlock()
		return fmt.Errorf("etcd: deregister %v: %w", key, discovery.ErrClosed)
	}
	e := b.regs.held[key]
	if e == nil {
		b.regs.mu.Unlock()
		return fmt.Errorf("etcd: deregister %v: %w", key, discovery.ErrNotRegistered)
	}
	b.dropLocked(key, e)
	finishAll(e.waiters, fmt.Errorf("etcd: register %v: deregistered meanwhile: %w", key, discovery.ErrNotRegistered))
	e.waiters = nil
	b.regs.tombs[e.path] = &tomb{waiters: []*waiter{w}}
	b.regs.mu.Unlock()

	b.poke()
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		// The keeper still deletes it when etcd answers (or Close revokes
		// the lease).
		return fmt.Errorf("etcd: deregister %v: %w", key, ctx.Err())
	}
}

// Close implements discovery.Registrar: it stops the keep-alive, revokes the
// lease (bounded by Config.RequestTimeout) so every instance leaves etcd at
// once, ends all watchers, waits for every goroutine and, for New, closes
// the client. It is idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.regs.mu.Lock()
		b.regs.closed = true
		held := b.regs.held
		b.regs.held = map[discovery.Key]*entry{}
		clear(b.regs.byPath)
		clear(b.regs.dirty)
		lease := b.granted
		b.regs.mu.Unlock()

		b.cancel()
		b.wg.Wait()
		// No writer is left (a Register writing on its own goroutine
		// holds writeMu): what is still to delete is in b.regs.tombs.
		b.writeMu.Lock()
		b.regs.mu.Lock()
		tombs := b.regs.tombs
		b.regs.tombs = map[string]*tomb{}
		b.regs.mu.Unlock()
		b.writeMu.Unlock()
		// The watch goroutines have stopped: end every watcher.
		b.watches.Close(fmt.Errorf("etcd: watch: %w", discovery.ErrClosed))

		var errs []error
		var revokeErr error
		if lease != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
			_, err := b.cli.Revoke(ctx, lease)
			cancel()
			if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				b.log.Warn("failed to revoke lease on close; instances expire with it", "lease", leaseString(lease), "ttl", b.cfg.TTL, "error", err)
				revokeErr = fmt.Errorf("etcd: revoke lease %s: %w", leaseString(lease), err)
				errs = append(errs, revokeErr)
			} else {
				b.log.Info("revoked lease", "lease", leaseString(lease), "instances", len(held))
			}
		}
		closedErr := fmt.Errorf("etcd: %w", discovery.ErrClosed)
		for _, e := range held {
			finishAll(e.waiters, closedErr)
			b.regs.reportLocked(e, discovery.Status{State: discovery.StateDeregistered})
		}
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
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
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
