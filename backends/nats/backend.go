package nats

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/envconfig"
)

var (
	_ discovery.Backend          = (*Backend)(nil)
	_ discovery.StatusReporter   = (*Backend)(nil)
	_ discovery.RevisionResolver = (*Backend)(nil)
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
	// bmu guards kv and stream, which are set when the bucket is open,
	// and dropped (bucketLost notified) when a request finds it gone (a
	// server restarted without its data, a deleted bucket), so that the
	// next use opens, or creates, it again.
	bmu        sync.Mutex
	kv         jetstream.KeyValue   // nil until the bucket is open
	stream     jetstream.Stream     // the bucket's stream, with kv
	bucketLost backendkit.Broadcast // notified when kv is dropped

	mu        sync.Mutex
	regs      map[discovery.Key]*registration
	bySubject map[string]*registration
	removals  map[discovery.Key]*removal // keys Deregister left to remove in the background
	closed    bool
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
// (see ReconnectDelay), and opens the bucket then; meanwhile Register
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
		cfg:       cfg,
		log:       backendLogger(cfg.Logger),
		prefix:    "$KV." + cfg.Bucket + ".",
		owner:     nuid.Next(),
		conn:      newConnState(),
		board:     backendkit.NewStatusBoard(),
		events:    make(chan *natsgo.Msg, eventBuffer),
		bucketSem: make(chan struct{}, 1),
		regs:      make(map[discovery.Key]*registration),
		bySubject: make(map[string]*registration),
		removals:  make(map[discovery.Key]*removal),
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
