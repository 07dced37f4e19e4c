package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/envconfig"
	"github.com/roster-sd/roster/retry"
)

var (
	_ discovery.Backend        = (*Backend)(nil)
	_ discovery.StatusReporter = (*Backend)(nil)
)

// Headers of the messages the Backend writes, besides JetStream's own.
const (
	// ownerHeader carries the random ID of the Backend that wrote a key,
	// so that a Backend tells its own writes from another process's.
	ownerHeader = "Roster-Owner"
	kvOpHeader  = "KV-Operation" // "DEL" or "PURGE" on a removal (nats.go's key-value layout)
	markerHdr   = "Nats-Marker-Reason"
)

// eventBuffer is how many own-key events wait for the keeper before NATS
// drops some (a dropped event is caught by the next renewal).
const eventBuffer = 4096

// Backend is a discovery.Backend and discovery.StatusReporter on a
// JetStream key-value bucket. See the package documentation.
type Backend struct {
	cfg    Config
	log    hclog.Logger
	nc     *natsgo.Conn
	js     jetstream.JetStream
	prefix string // "$KV.<bucket>."
	owner  string // this Backend's random ID, in ownerHeader
	conn   *connState

	board  *backendkit.StatusBoard
	group  *backendkit.FeedGroup
	events chan *natsgo.Msg // messages on own keys written by others

	skipped backendkit.SkipLog // invalid values already logged (resolver.go)

	ctx       context.Context // ends when Close starts
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the keeper
	closeOnce sync.Once
	closing   atomic.Bool   // Close has started: a dropped connection is no news
	inClear   bool          // a password or token travels without TLS: see CredentialsInClear
	pending   atomic.Bool   // a registration wants another look soon
	retries   atomic.Uint64 // failed attempts to keep instances published, for BackendFacts
	rtt       atomic.Int64  // round trip of the last stored write, in nanoseconds

	// bucketSem (capacity 1) lets one caller at a time open the bucket:
	// a channel rather than a mutex, since opening takes requests and
	// another caller waits only as long as its context allows.
	bucketSem chan struct{}
	// bmu guards kv, stream and bucketLost. kv and stream are set when
	// the bucket is open, and dropped when a request finds it gone (a
	// server restarted without its data, a deleted bucket), so that the
	// next use opens, or creates, it again.
	bmu        sync.Mutex
	kv         jetstream.KeyValue // nil until the bucket is open
	stream     jetstream.Stream   // the bucket's stream, with kv
	bucketLost chan struct{}      // closed, and replaced, when kv is dropped

	mu        sync.Mutex
	regs      map[discovery.Key]*registration
	bySubject map[string]*registration
	removals  map[discovery.Key]*removal // keys Deregister left to remove in the background
	closed    bool
}

// registration is one instance this Backend keeps published. Its fields
// but check are guarded by mu, which is held across the requests that
// write its key, so that writes of one key never overlap.
type registration struct {
	mu sync.Mutex
	// ctx ends when Deregister or Close starts, or once r is forgotten;
	// it ends a Register of r that waits through an outage, so that
	// Deregister does not wait for it. Set before r is shared.
	ctx     context.Context
	cancel  context.CancelFunc
	inst    discovery.Instance
	key     string // bucket key
	subject string // "$KV.<bucket>.<key>"
	value   []byte
	rev     uint64 // sequence of this Backend's last write of the key; 0 when it does not hold it
	// expires is when NATS expires the key without another renewal, as
	// of this Backend's last stored write (Unix nanoseconds); 0 when this
	// Backend does not hold the key. Read without mu, by BackendFacts.
	expires atomic.Int64
	state   discovery.State
	sub     *natsgo.Subscription
	gone    bool // deregistered or closed, or abandoned
	// abandoned: gone because the Register that created it gave up (its
	// context ended) rather than by Deregister or Close; a Register that
	// waited for it starts afresh.
	abandoned bool
	check     atomic.Bool // another process wrote the key: look at it
	// rechecks counts looks, after an event, that found the bucket still
	// holding this Backend's last write: the event's message reaches
	// subscribers before JetStream has stored it, so the keeper looks
	// again shortly (see recheckDelay).
	rechecks int
}

// New connects to NATS, makes sure the bucket exists with the settings
// the Backend needs (creating it if absent), and returns a Backend. An
// invalid Config gives an error wrapping ErrInvalidConfig that names the
// field; an existing bucket without per-message TTLs or limit markers
// gives an error wrapping ErrBucketSettings that names what is missing; a
// server that refuses the connection (TLS, authentication) gives an error.
//
// A server that cannot be reached (or that does not answer the bucket's
// opening within RequestTimeout) is not an error, as with the etcd
// backend: New returns a Backend that connects as soon as NATS is up
// (every ReconnectDelay), and opens the bucket then; meanwhile Register
// keeps trying, registrations report discovery.StateRetrying, and reads
// fail with discovery.ErrUnavailable. An application can thus start
// while NATS is down and be registered the moment it is back.
func New(cfg Config) (*Backend, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.loadTLS()
	if err != nil {
		return nil, err
	}
	b := &Backend{
		cfg:        cfg,
		log:        backendLogger(cfg.Logger),
		prefix:     "$KV." + cfg.Bucket + ".",
		owner:      nuid.Next(),
		conn:       newConnState(),
		board:      backendkit.NewStatusBoard(),
		events:     make(chan *natsgo.Msg, eventBuffer),
		bucketSem:  make(chan struct{}, 1),
		bucketLost: make(chan struct{}),
		regs:       make(map[discovery.Key]*registration),
		bySubject:  make(map[string]*registration),
		removals:   make(map[discovery.Key]*removal),
	}
	b.group = backendkit.NewFeedGroup(b.startFollowing)
	opts, err := b.connectOptions()
	if err != nil {
		return nil, err
	}
	urls := strings.Join(cfg.Endpoints, ",")
	nc, err := natsgo.Connect(urls, opts...)
	if unreachable(err) {
		// Keep trying in the background; the handlers report the
		// connection once it is made.
		b.conn.set(false, err)
		b.log.Warn("cannot reach NATS", "endpoints", envconfig.Redact(urls), "error", err)
		nc, err = natsgo.Connect(urls, append(opts, natsgo.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", envconfig.Redact(urls), err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc)
	if err == nil && nc.IsConnected() {
		// Report a bucket without the settings roster needs now.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
		_, _, err = b.bucket(ctx)
		cancel()
		if slow(err) {
			// A server too busy to answer in time is as good as one that
			// cannot be reached: the bucket is opened on first use.
			b.log.Warn("cannot open the bucket yet; will open it on first use", "bucket", cfg.Bucket, "error", err)
			err = nil
		}
	}
	if err != nil {
		b.closing.Store(true)
		nc.Close()
		return nil, err
	}
	b.inClear = cfg.CredentialsInClear()
	if b.inClear && nc.IsConnected() {
		// A server that requires TLS had the client upgrade the
		// connection before it authenticated.
		if _, err := nc.TLSConnectionState(); err == nil {
			b.inClear = false
		}
	}
	if b.inClear {
		b.log.Warn(CredentialsInClearMessage, "endpoints", envconfig.Redact(urls))
	}
	b.followBucket()
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Go(b.keep)
	return b, nil
}

func (b *Backend) connectOptions() ([]natsgo.Option, error) {
	c := b.cfg
	jitter := c.ReconnectDelay / 5
	opts := []natsgo.Option{
		natsgo.Name("roster"),
		natsgo.Timeout(c.DialTimeout),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(c.ReconnectDelay),
		natsgo.ReconnectJitter(jitter, jitter),
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

// bucket returns the key-value bucket and its stream, opening them on
// first use and after they were found gone (creating the bucket if absent
// and checking its settings). While another caller opens them it waits
// until ctx ends.
func (b *Backend) bucket(ctx context.Context) (jetstream.KeyValue, jetstream.Stream, error) {
	b.bmu.Lock()
	kv, stream := b.kv, b.stream
	b.bmu.Unlock()
	if kv != nil {
		return kv, stream, nil
	}
	select {
	case b.bucketSem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("nats: open bucket %q: %w", b.cfg.Bucket, ctx.Err())
	}
	defer func() { <-b.bucketSem }()
	b.bmu.Lock()
	kv, stream = b.kv, b.stream
	b.bmu.Unlock()
	if kv != nil {
		return kv, stream, nil
	}
	kv, stream, err := b.openBucket(ctx)
	if err != nil {
		return nil, nil, err
	}
	b.bmu.Lock()
	b.kv, b.stream = kv, stream
	b.bmu.Unlock()
	return kv, stream, nil
}

// bucketGone reports whether err, from a request on the bucket, says that
// its stream does not exist (any more): a publish that no stream takes,
// or a request that names a stream the server does not have.
func bucketGone(err error) bool {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, natsgo.ErrStreamNotFound) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound {
		return true
	}
	var legacyErr *natsgo.APIError
	return errors.As(err, &legacyErr) && legacyErr.ErrorCode == natsgo.JSErrCodeStreamNotFound
}

// checkBucket drops the bucket's handles if err says the bucket is gone,
// so that the next use opens (or creates) it again, wakes the watches of
// the old bucket, and reports whether it did.
func (b *Backend) checkBucket(err error) bool {
	if err == nil || !bucketGone(err) {
		return false
	}
	b.dropBucket(err)
	return true
}

// dropBucket drops the bucket's handles, if held, so that the next use
// opens (or creates) the bucket again, and wakes the watches of the old
// one.
func (b *Backend) dropBucket(cause error) {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	if b.kv != nil {
		b.kv, b.stream = nil, nil
		close(b.bucketLost)
		b.bucketLost = make(chan struct{})
		if !b.closing.Load() {
			b.log.Warn("the bucket is gone; creating it again", "bucket", b.cfg.Bucket, "error", cause)
		}
	}
}

// errBucketDeleted is dropBucket's cause on the server's advisory.
var errBucketDeleted = errors.New("nats: the server reports the bucket's stream deleted")

// followBucket subscribes to the server's advisory of the deletion of the
// bucket's stream (an operator's `nats kv rm`), so that watches of the
// old bucket, which would otherwise wait in silence, start again at once
// on a new one. A connection not allowed to read advisories goes without
// (the watches then notice when their consumer cannot be recreated).
func (b *Backend) followBucket() {
	_, err := b.nc.Subscribe("$JS.EVENT.ADVISORY.STREAM.DELETED.KV_"+b.cfg.Bucket, func(*natsgo.Msg) {
		b.dropBucket(errBucketDeleted)
	})
	if err != nil {
		b.log.Debug("cannot follow the bucket's deletion", "error", err)
	}
}

// lostSignal returns a channel closed when the bucket is next found gone.
func (b *Backend) lostSignal() <-chan struct{} {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return b.bucketLost
}

// openBucket opens the bucket, creating it if absent, and checks its
// settings; bucketSem is held.
func (b *Backend) openBucket(ctx context.Context) (jetstream.KeyValue, jetstream.Stream, error) {
	name := "KV_" + b.cfg.Bucket
	stream, err := b.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         b.cfg.Bucket,
			Description:    "roster service instances",
			History:        1,
			Storage:        jetstream.FileStorage,
			Replicas:       b.cfg.Replicas,
			LimitMarkerTTL: DefaultMarkerTTL,
		})
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, nil, fmt.Errorf("nats: create bucket %q: %w", b.cfg.Bucket, unavailable(ctx, err))
		}
		stream, err = b.js.Stream(ctx, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("nats: open bucket %q: %w", b.cfg.Bucket, unavailable(ctx, err))
	}
	sc := stream.CachedInfo().Config
	var missing []string
	if !sc.AllowMsgTTL {
		missing = append(missing, "per-message TTLs (stream AllowMsgTTL)")
	}
	if sc.SubjectDeleteMarkerTTL <= 0 {
		missing = append(missing, "limit markers (bucket LimitMarkerTTL, stream SubjectDeleteMarkerTTL)")
	}
	if !sc.AllowRollup {
		missing = append(missing, "rollups (stream AllowRollup)")
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: bucket %q has no %s", ErrBucketSettings, b.cfg.Bucket, strings.Join(missing, ", no "))
	}
	kv, err := b.js.KeyValue(ctx, b.cfg.Bucket)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: open bucket %q: %w", b.cfg.Bucket, unavailable(ctx, err))
	}
	return kv, stream, nil
}

// Register implements discovery.Registrar. It validates in (an error wraps
// discovery.ErrInvalidInstance and names the field), writes its key with
// the TTL and returns once JetStream has stored it; the Backend then renews
// it about every TTL/3. The later writer owns a key: if another process
// holds the same service and ID, this write takes it over and the other
// process reports discovery.StateConflict. While NATS is unreachable it
// keeps trying (in discovery.StateRegistering) until ctx ends; then it
// returns ctx's error and a new registration leaves nothing behind. After
// Close, or if Close or a Deregister of the instance ends that wait, it
// returns an error wrapping discovery.ErrClosed.
func (b *Backend) Register(ctx context.Context, in discovery.Instance) error {
	in, err := in.Normalize()
	if err != nil {
		return fmt.Errorf("nats: register: %w", err)
	}
	key, err := kvKey(in.Key())
	if err != nil {
		return fmt.Errorf("nats: register: %w", err)
	}
	value, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("nats: register %s: %w", in.Key(), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: register %s: %w", in.Key(), err)
	}
	for {
		again, err := b.register(ctx, in, key, value)
		if !again {
			return err
		}
	}
}

// register is one try of Register. It returns again when the
// registration it waited for was abandoned by the Register that created
// it (that call's context ended): this call then starts afresh and owns
// the outcome.
func (b *Backend) register(ctx context.Context, in discovery.Instance, key string, value []byte) (again bool, _ error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, fmt.Errorf("nats: register: %w", discovery.ErrClosed)
	}
	r := b.regs[in.Key()]
	isNew := r == nil
	if isNew {
		r = &registration{inst: in, key: key, subject: b.prefix + key, value: value}
		r.ctx, r.cancel = context.WithCancel(b.ctx)
		// Locked before it is shared, so that no one (the keeper) looks at
		// it before this Register has written it; this never waits.
		r.mu.Lock()
		b.regs[in.Key()] = r
		b.bySubject[r.subject] = r
	}
	b.mu.Unlock()

	if !isNew {
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.gone {
		if r.abandoned && ctx.Err() == nil {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("nats: register %s: %w", in.Key(), err)
		}
		return false, fmt.Errorf("nats: register %s: %w", in.Key(), b.stoppedErr())
	}
	if isNew {
		b.setLocked(r, discovery.Status{State: discovery.StateRegistering})
		// Not under b.mu: subscribing waits for the NATS client's lock,
		// which a reconnection attempt holds for up to DialTimeout.
		sub, err := b.nc.ChanSubscribe(r.subject, b.events)
		if err != nil {
			r.abandoned = true
			b.forgetLocked(r)
			return false, fmt.Errorf("nats: register %s: %w", in.Key(), unavailable(context.Background(), err))
		}
		r.sub = sub
	}
	prevInst, prevValue := r.inst, r.value
	r.inst, r.value = in, value
	if err := b.claimLocked(ctx, r); err != nil {
		if isNew {
			b.abandonLocked(r)
		} else {
			r.inst, r.value = prevInst, prevValue
		}
		return false, fmt.Errorf("nats: register %s: %w", in.Key(), unavailable(ctx, err))
	}
	b.setLocked(r, discovery.Status{State: discovery.StateRegistered})
	b.log.Info("registered", "node", in.Address, "key", key)
	return false, nil
}

// claimLocked writes r's key whoever holds it (the later writer wins). As
// etcd's Register does, it keeps trying through an outage, at once when
// the connection comes back and otherwise after each delay of the retry
// policy, until the write is stored, ctx ends or Close starts.
func (b *Backend) claimLocked(ctx context.Context, r *registration) error {
	var bo retry.Backoff
	recreated := false
	for {
		if r.ctx.Err() != nil {
			return b.stoppedErr()
		}
		// Taken before the attempt, so that a connection that drops or
		// comes back during it (or before the wait) ends the wait at once.
		_, changed, _ := b.conn.get()
		err := b.connected()
		if err == nil {
			// One attempt is bounded by RequestTimeout, and by Close and
			// Deregister.
			actx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
			stop := context.AfterFunc(r.ctx, cancel)
			err = b.writeLocked(actx, r)
			stop()
			cancel()
		}
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrBucketSettings) {
			return err
		}
		// A bucket found gone is opened, or created, again at once.
		if b.checkBucket(err) && !recreated {
			recreated = true
			continue
		}
		if bo == nil {
			bo = b.cfg.Retry.Backoff()
		}
		delay, _ := bo.Next()
		b.retries.Add(1)
		b.log.Debug("failed to register, will retry", "node", r.inst.Address, "key", r.key, "retry_in", delay, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return b.stoppedErr()
		case <-changed:
		case <-time.After(delay):
		}
	}
}

// stoppedErr is claimLocked's error once Close or Deregister has ended
// it.
func (b *Backend) stoppedErr() error {
	if b.ctx.Err() != nil {
		return fmt.Errorf("closed while registering: %w", discovery.ErrClosed)
	}
	return fmt.Errorf("deregistered meanwhile: %w", discovery.ErrClosed)
}

// writeLocked makes one attempt at writing r's key whoever holds it: one
// unconditional write, as a raw key-value Put, since the later writer of a
// key owns it and there is nothing to compare. (Renewals and restores, by
// the keeper, are compare-and-sets; a registration only takes a key over
// here.) Its sequence becomes r.rev, what the next renewal expects.
func (b *Backend) writeLocked(ctx context.Context, r *registration) error {
	// The bucket must exist before its subjects take writes; this opens
	// (or creates) it once, when New could not.
	if _, _, err := b.bucket(ctx); err != nil {
		return err
	}
	seq, err := b.write(ctx, r)
	if err != nil {
		return err
	}
	r.rev = seq
	return nil
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

// abandonLocked forgets r, a new registration whose first write failed,
// and removes its key if the write landed after all.
func (b *Backend) abandonLocked(r *registration) {
	r.abandoned = b.ctx.Err() == nil && r.ctx.Err() == nil // neither Close nor Deregister ended it
	if b.connected() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
		if l, err := b.last(ctx, r.subject); err == nil && l.live && l.owner == b.owner {
			_ = b.purge(ctx, r.subject, l.seq)
		}
		cancel()
	}
	b.forgetLocked(r)
}

// forgetLocked drops r from the Backend's maps and stops its own-key
// subscription, and reports it deregistered.
func (b *Backend) forgetLocked(r *registration) {
	b.mu.Lock()
	if b.regs[r.inst.Key()] == r {
		delete(b.regs, r.inst.Key())
	}
	if b.bySubject[r.subject] == r {
		delete(b.bySubject, r.subject)
	}
	b.mu.Unlock()
	r.gone = true
	r.cancel()
	r.expires.Store(0)
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
	b.setLocked(r, discovery.Status{State: discovery.StateDeregistered})
}

// Deregister implements discovery.Registrar. It removes the key now (a
// purge, which watchers see as a removal) if this Backend holds it, and
// stops renewing it; if another process has taken the key over, its
// instance stays. It returns an error wrapping discovery.ErrNotRegistered
// for an instance this Backend does not hold and discovery.ErrClosed after
// Close. If NATS cannot be reached the registration is forgotten all the
// same, and Deregister keeps trying within ctx (at once when the
// connection comes back, otherwise after each delay of Config.Retry), as
// discovery.Registrar.Deregister says. A Register of the instance still waiting through an
// outage is ended rather than waited for; if it was the instance's first,
// nothing was written and Deregister returns nil.
//
// Once called, Deregister is done whatever ctx does (as on etcd): the
// registration is forgotten and reported deregistered, and if ctx ends
// (or had ended) before the key is removed, the Backend removes it in the
// background (trying through an outage for up to RequestTimeout; the key
// expires with its TTL otherwise) and Deregister returns an error wrapping
// discovery.ErrUnavailable and ctx's error. A second Deregister of the instance meanwhile
// waits for that removal and returns its outcome.
func (b *Backend) Deregister(ctx context.Context, in discovery.Instance) error {
	k := in.Key()
	if k.ID == "" && in.Address != "" {
		k.ID = discovery.IDFromAddress(in.Address)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("nats: deregister: %w", discovery.ErrClosed)
	}
	r := b.regs[k]
	if r != nil {
		// This call removes r: a concurrent Deregister finds nothing, and
		// a Register starts afresh.
		delete(b.regs, k)
		if b.bySubject[r.subject] == r {
			delete(b.bySubject, r.subject)
		}
	}
	rm := b.removals[k]
	b.mu.Unlock()
	if r == nil {
		if rm != nil {
			return rm.wait(ctx, k)
		}
		return fmt.Errorf("nats: deregister %s: %w", k, discovery.ErrNotRegistered)
	}
	// End a Register of r that waits through an outage, which holds r.mu
	// until NATS is back or its own context ends.
	r.cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		// That Register was r's first and gave r up: nothing was written.
		return nil
	}
	b.forgetLocked(r)
	if r.rev == 0 {
		return nil
	}
	if ctx.Err() == nil {
		err := b.purgeThrough(ctx, r)
		if err == nil {
			b.log.Info("deregistered", "node", r.inst.Address, "key", r.key)
			return nil
		}
		if ctx.Err() == nil {
			// NATS refused the removal.
			b.log.Warn("failed to remove an instance; it expires with its TTL", "node", r.inst.Address, "key", r.key,
				"ttl", b.cfg.TTL, "error", err)
			return fmt.Errorf("nats: deregister %s: %w", k, err)
		}
	}
	// The caller gave up first (discovery.Registrar.Deregister): the key is
	// still removed, once NATS answers.
	b.removeLater(k, r)
	return fmt.Errorf("nats: deregister %s: the removal is not confirmed, the instance is removed in the background: %w: %w",
		k, discovery.ErrUnavailable, ctx.Err())
}

// purgeThrough removes r's key (purgeOwn), trying again through an outage,
// as claimLocked writes it: at once when the connection comes back, and
// otherwise after each delay of the retry policy, until the key is gone,
// NATS refuses the removal, or ctx ends. r.mu is held.
func (b *Backend) purgeThrough(ctx context.Context, r *registration) error {
	var bo retry.Backoff
	var last error
	for {
		_, changed, _ := b.conn.get()
		err := b.connected()
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
			_, err = b.purgeOwn(actx, r.subject, r.rev)
			cancel()
			if err == nil {
				return nil
			}
			err = unavailable(ctx, err)
		}
		if ctx.Err() != nil {
			if last == nil {
				last = discovery.ErrUnavailable
			}
			return fmt.Errorf("%w: %w", last, ctx.Err())
		}
		if !errors.Is(err, discovery.ErrUnavailable) {
			return err
		}
		last = err
		if bo == nil {
			bo = b.cfg.Retry.Backoff()
		}
		delay, _ := bo.Next()
		b.log.Debug("failed to remove an instance, will retry", "node", r.inst.Address, "key", r.key, "retry_in", delay, "error", err)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(delay):
		}
	}
}

// removal is a removal of a deregistered instance's key that outlives the
// Deregister whose context ended.
type removal struct {
	done chan struct{} // closed when it is over
	err  error         // its outcome, set before done is closed
}

// wait waits for the removal to be over, or for ctx, and returns its
// outcome as Deregister's.
func (rm *removal) wait(ctx context.Context, k discovery.Key) error {
	select {
	case <-rm.done:
		return rm.err
	case <-ctx.Done():
		return fmt.Errorf("nats: deregister %s: %w", k, ctx.Err())
	}
}

// removeLater removes r's key (at the sequence this Backend last wrote, so
// that a later Register's write is never removed) on a goroutine of the
// Backend, bounded by RequestTimeout; Close waits for it.
func (b *Backend) removeLater(k discovery.Key, r *registration) {
	rm := &removal{done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		// Close has started; the key expires with its TTL.
		b.mu.Unlock()
		return
	}
	b.removals[k] = rm
	b.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
		defer cancel()
		// Through an outage within RequestTimeout; purgeOwn leaves a key
		// written since (another process, a new Register) alone.
		r.mu.Lock()
		err := b.purgeThrough(ctx, r)
		r.mu.Unlock()
		switch {
		case err == nil:
			b.log.Info("deregistered", "node", r.inst.Address, "key", r.key)
		default:
			b.log.Warn("failed to remove an instance; it expires with its TTL", "node", r.inst.Address, "key", r.key,
				"ttl", b.cfg.TTL, "error", err)
			err = fmt.Errorf("nats: deregister %s: %w", k, unavailable(context.Background(), err))
		}
		rm.err = err
		b.mu.Lock()
		if b.removals[k] == rm {
			delete(b.removals, k)
		}
		b.mu.Unlock()
		close(rm.done)
	})
	b.mu.Unlock()
}

// CredentialsInClear reports whether the Backend sends a password or a
// token without TLS (see Config.CredentialsInClear; once connected, what
// the connection does): New then logs CredentialsInClearMessage once. A
// program that wants to say it its own way (the command line) asks here
// rather than reading the log.
func (b *Backend) CredentialsInClear() bool { return b.inClear }

// Status implements discovery.StatusReporter.
func (b *Backend) Status(service, id string) (discovery.Status, error) {
	return b.board.Status(service, id)
}

// Statuses implements discovery.StatusReporter.
func (b *Backend) Statuses() []discovery.Status { return b.board.Statuses() }

// SubscribeStatus implements discovery.StatusReporter.
func (b *Backend) SubscribeStatus() discovery.StatusSubscription { return b.board.SubscribeStatus() }

// Close implements discovery.Registrar: it stops renewing, purges every
// key this Backend holds at once (all purges in flight together, bounded
// by RequestTimeout; a key NATS does not get to purge expires with its
// TTL), stops every watcher and goroutine and closes the connection. It
// returns the failures to remove keys, joined, each naming its key and
// wrapping discovery.ErrUnavailable (unless NATS refused the removal); a
// second Close does nothing and returns nil.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() { err = errors.Join(b.drainOnClose(), b.close()) }) // drain.go
	return err
}

func (b *Backend) close() error {
	b.closing.Store(true)
	b.mu.Lock()
	b.closed = true
	regs := make([]*registration, 0, len(b.regs))
	for _, r := range b.regs {
		regs = append(regs, r)
	}
	b.mu.Unlock()
	slices.SortFunc(regs, func(x, y *registration) int { return strings.Compare(x.key, y.key) })

	b.cancel()
	b.wg.Wait()
	b.group.Close(nil)

	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.RequestTimeout)
	defer cancel()
	if len(regs) > 0 {
		// A connection being made again (a server restarting) may be
		// back within RequestTimeout: wait for it rather than fail every
		// removal at once.
		for up, changed, _ := b.conn.get(); !up && !b.nc.IsClosed(); up, changed, _ = b.conn.get() {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
			}
			break
		}
	}
	type pending struct {
		r   *registration
		ack jetstream.PubAckFuture
	}
	var acks []pending
	var errs []error
	fail := func(r *registration, err error) {
		b.log.Warn("failed to remove an instance on close; it expires with its TTL", "node", r.inst.Address,
			"key", r.key, "ttl", b.cfg.TTL, "error", err)
		errs = append(errs, fmt.Errorf("nats: close: remove %s: %w", r.key, unavailable(context.Background(), err)))
	}
	for _, r := range regs {
		r.mu.Lock()
		if !r.gone && r.rev != 0 {
			ack, err := b.js.PublishMsgAsync(b.purgeMsg(r.subject), jetstream.WithExpectLastSequencePerSubject(r.rev),
				jetstream.WithMsgTTL(DefaultMarkerTTL))
			if err != nil {
				fail(r, err)
			} else {
				acks = append(acks, pending{r, ack})
			}
		}
		if !r.gone {
			b.forgetLocked(r)
		}
		r.mu.Unlock()
	}
	removed := 0
	for _, p := range acks {
		select {
		case <-p.ack.Ok():
			removed++
		case err := <-p.ack.Err():
			if wrongSequence(err) {
				// A write of this Backend's whose reply it never got
				// (a renewal Close cut short) may be the last one.
				if ok, err := b.purgeOwn(ctx, p.r.subject, p.r.rev); ok {
					removed++
				} else if err != nil {
					fail(p.r, err)
				}
			} else {
				fail(p.r, err)
			}
		case <-ctx.Done():
			fail(p.r, ctx.Err())
		}
	}
	if len(regs) > 0 {
		b.log.Info("removed instances", "instances", removed)
	}
	b.board.Close()
	b.nc.Close()
	return errors.Join(errs...)
}

// setLocked moves r to st.State and reports st for r's instance; r.mu is
// held.
func (b *Backend) setLocked(r *registration, st discovery.Status) {
	r.state = st.State
	st.Instance = r.inst
	b.board.Set(st)
}

// lastMsg is what the bucket holds for one key.
type lastMsg struct {
	seq   uint64 // sequence of the last message on the key's subject; 0 if none
	live  bool   // it is a value, not a removal or expiry marker
	owner string // ownerHeader of the message
	value []byte
}

// last reads the last message on subject.
func (b *Backend) last(ctx context.Context, subject string) (lastMsg, error) {
	_, stream, err := b.bucket(ctx)
	if err != nil {
		return lastMsg{}, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lastMsg{}, nil
	}
	if err != nil {
		return lastMsg{}, err
	}
	return lastMsg{
		seq:   m.Sequence,
		live:  m.Header.Get(kvOpHeader) == "" && m.Header.Get(markerHdr) == "",
		owner: m.Header.Get(ownerHeader),
		value: m.Data,
	}, nil
}

// publish writes r's value with the TTL if the last sequence of its
// subject is expect (0: no message), and returns the new sequence.
func (b *Backend) publish(ctx context.Context, r *registration, expect uint64) (uint64, error) {
	return b.write(ctx, r, jetstream.WithExpectLastSequencePerSubject(expect))
}

// write writes r's value with the TTL, under the conditions of opts, and
// returns the new sequence.
func (b *Backend) write(ctx context.Context, r *registration, opts ...jetstream.PublishOpt) (uint64, error) {
	sent := time.Now()
	ack, err := b.js.PublishMsg(ctx, b.valueMsg(r), append(opts, jetstream.WithMsgTTL(b.cfg.TTL))...)
	if err != nil {
		return 0, err
	}
	b.stored(r, sent)
	return ack.Sequence, nil
}

// valueMsg is the message that writes r's value as this Backend's.
func (b *Backend) valueMsg(r *registration) *natsgo.Msg {
	m := &natsgo.Msg{Subject: r.subject, Data: r.value, Header: natsgo.Header{}}
	m.Header.Set(ownerHeader, b.owner)
	return m
}

// stored records, for BackendFacts, that NATS stored a write of r's key
// sent at sent: when the key expires without another, and the round trip.
func (b *Backend) stored(r *registration, sent time.Time) {
	r.expires.Store(sent.Add(b.cfg.TTL).UnixNano())
	b.rtt.Store(int64(time.Since(sent)))
}

func (b *Backend) purgeMsg(subject string) *natsgo.Msg {
	m := natsgo.NewMsg(subject)
	m.Header.Set(kvOpHeader, "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(ownerHeader, b.owner)
	return m
}

// purgeOwn removes the key of subject if this Backend wrote its last
// value: at sequence rev, the last write it knows of, or at a later one
// that is its own too (a write whose reply it never got, such as a renewal
// cut short by Close or by RequestTimeout). A value another process wrote
// is left to it: removed is false and err nil.
func (b *Backend) purgeOwn(ctx context.Context, subject string, rev uint64) (removed bool, err error) {
	err = b.purge(ctx, subject, rev)
	for attempt := 0; wrongSequence(err) && attempt < 3; attempt++ {
		l, lerr := b.last(ctx, subject)
		if lerr != nil {
			return false, lerr
		}
		if !l.live || l.owner != b.owner {
			return false, nil
		}
		err = b.purge(ctx, subject, l.seq)
	}
	if wrongSequence(err) {
		return false, nil
	}
	return err == nil, err
}

// purge removes the key of subject if its last sequence is expect. The
// purge marker itself expires after DefaultMarkerTTL.
func (b *Backend) purge(ctx context.Context, subject string, expect uint64) error {
	_, err := b.js.PublishMsg(ctx, b.purgeMsg(subject), jetstream.WithExpectLastSequencePerSubject(expect),
		jetstream.WithMsgTTL(DefaultMarkerTTL))
	return err
}

// wrongSequence reports a compare-and-set failure: the key's last
// sequence was not the one expected.
func wrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// unavailable wraps err, from a call bounded by ctx,
// with discovery.ErrUnavailable unless ctx has ended (the caller gave up),
// err is a compare-and-set failure, says the Backend or the registration
// was closed, or already says so. A timeout of the
// client's own, with ctx still live, is the registry's fault.
func unavailable(ctx context.Context, err error) error {
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, discovery.ErrUnavailable),
		errors.Is(err, discovery.ErrInvalidInstance), errors.Is(err, discovery.ErrClosed), wrongSequence(err):
		return err
	}
	return fmt.Errorf("%w: %w", discovery.ErrUnavailable, err)
}

// connState follows the connection: up or down, and a channel closed at
// every change.
type connState struct {
	mu      sync.Mutex
	up      bool
	err     error
	changed chan struct{}
}

func newConnState() *connState { return &connState{up: true, changed: make(chan struct{})} }

// set records the connection's state and reports whether it changed.
func (c *connState) set(up bool, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == up {
		return false
	}
	c.up, c.err = up, err
	close(c.changed)
	c.changed = make(chan struct{})
	return true
}

// get returns whether the connection is up, a channel closed at the next
// change, and why it went down.
func (c *connState) get() (up bool, changed <-chan struct{}, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up, c.changed, c.err
}

// sameValue reports whether l holds value.
func (l lastMsg) sameValue(value []byte) bool { return bytes.Equal(l.value, value) }
