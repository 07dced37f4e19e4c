package webui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/hostcheck"
)

// Registry is what the web view reads. The roster command line provides
// one for each backend it can reach.
//
// Implementations are safe for concurrent use.
type Registry interface {
	// Services lists every service in the registry with its instance
	// count, sorted by name.
	Services(ctx context.Context) ([]ServiceSummary, error)

	// Instances lists the instances of service, sorted by ID, each with the
	// time left on its lease where the registry has leases.
	Instances(ctx context.Context, service string) ([]InstanceInfo, error)

	// Watch follows the instances of service, as discovery.Resolver's Watch
	// does: its Next reports an unreachable registry with an error wrapping
	// discovery.ErrUnavailable.
	Watch(ctx context.Context, service string) (discovery.Watcher, error)
}

// ServiceFinder is implemented by a Registry that can report services as
// they appear. The view then learns of new services from it, and does not
// list the services again every second while a page is open.
type ServiceFinder interface {
	// FindServices reads the registry and calls found with every service
	// that has instances (possibly none: the read succeeded), then with
	// the services that get instances written, until ctx ends (it then
	// returns ctx's error) or until it cannot go on (any other error). The
	// view calls it again a second after an error. found may be given a
	// service more than once.
	FindServices(ctx context.Context, found func(services []string)) error
}

// RegistryFollower is implemented by a Registry that can follow every
// instance of the registry at once, with one watch whatever the number of
// services (etcd: one watch over the prefix). The view then reads nothing
// else but leases (LeaseReader), and opens no watch per service.
type RegistryFollower interface {
	// FollowRegistry reads every instance of the registry and calls apply
	// with them (an update with Reset), then with each change, until ctx
	// ends (it then returns ctx's error) or until it cannot go on (any
	// other error: the view calls it again a second later, and takes the
	// next Reset as the whole registry). It tells apply when the registry
	// stops answering, and when it answers again. apply is called from
	// FollowRegistry's goroutine, one update at a time.
	FollowRegistry(ctx context.Context, apply func(RegistryUpdate)) error
}

// RegistryUpdate is what a RegistryFollower reports at once.
type RegistryUpdate struct {
	// Reset says that Put holds every instance of the registry: any other
	// is gone.
	Reset bool
	// Put holds the instances written (new or changed).
	Put []LeasedInstance
	// Deleted holds the instances removed.
	Deleted []discovery.Key
	// Unreachable, when not nil, says the registry does not answer now
	// (the instances known are kept). An update without it says it does.
	Unreachable error
}

// LeasedInstance is an instance with the lease that keeps it.
type LeasedInstance struct {
	discovery.Instance
	// Lease identifies the lease (for LeaseReader); empty for an
	// instance that none keeps. Instances of one process share one.
	Lease string
}

// LeaseReader is implemented by a RegistryFollower's Registry whose
// instances are kept by leases: the view reads each lease, not each
// instance, to show the time left on it.
type LeaseReader interface {
	// ReadLease reads the time left on lease.
	ReadLease(ctx context.Context, lease string) (LeaseInfo, error)
}

// LeaseInfo is one lease as LeaseReader reads it.
type LeaseInfo struct {
	// Found is false if the lease has expired or was revoked.
	Found bool
	// Left is the time left on it.
	Left time.Duration
	// Granted is the TTL it was granted with; 0 if not known.
	Granted time.Duration
}

// ServiceSummary is one service as Registry.Services lists it.
type ServiceSummary struct {
	// Service is the service's name.
	Service string
	// Instances is the number of its instances.
	Instances int
}

// InstanceInfo is one instance as Registry.Instances lists it.
type InstanceInfo struct {
	discovery.Instance
	// HasTTL reports whether TTL is known: false for a registry without
	// leases, or an instance without one.
	HasTTL bool
	// TTL is the time left on the instance's lease when it was read;
	// negative once the lease has expired.
	TTL time.Duration
}

// Defaults of the options.
const (
	// DefaultRescanInterval is how often, while a browser is connected, the
	// list of services is read again to find services that appeared,
	// unless the Registry is a ServiceFinder.
	DefaultRescanInterval = time.Second
	// DefaultRequestTimeout bounds each read of the registry.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxClients is how many event streams may be open at once.
	DefaultMaxClients = 64
	// DefaultWriteTimeout bounds each write to a browser: a browser that
	// does not take an event within it loses its stream (it reconnects).
	DefaultWriteTimeout = 10 * time.Second
	// DefaultHeartbeat is how often an idle stream gets a comment line, so
	// that a vanished browser is noticed and proxies keep the stream open.
	DefaultHeartbeat = 15 * time.Second
	// DefaultMaxFollowed is how many services the view follows, one watch
	// each, on a Registry that is not a RegistryFollower; it says on the
	// page how many it leaves out.
	DefaultMaxFollowed = 200
)

// ErrInvalidOption reports an option with an invalid value, from New.
var ErrInvalidOption = errors.New("webui: invalid option")

// Option configures New.
type Option func(*options)

type options struct {
	name           string
	logger         hclog.Logger
	rescan         time.Duration
	requestTimeout time.Duration
	maxClients     int
	writeTimeout   time.Duration
	heartbeat      time.Duration
	maxFollowed    int
	allowedHosts   []string
}

// WithName sets what the page names as the registry it shows, such as
// "etcd 127.0.0.1:2379 /roster/services". Empty by default.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithLogger sets the logger; nil (the default) logs warnings to stderr
// under the name "webui".
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRescanInterval sets how often the list of services is read while a
// browser is connected (DefaultRescanInterval when not given), unless the
// Registry is a ServiceFinder. It must be positive.
func WithRescanInterval(d time.Duration) Option { return func(o *options) { o.rescan = d } }

// WithRequestTimeout bounds each read of the registry (DefaultRequestTimeout
// when not given). It must be positive.
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// WithMaxClients sets how many event streams may be open at once
// (DefaultMaxClients when not given). A stream beyond it ends the one
// stuck longest in a write, or else the oldest: a browser reconnects, and
// a client that opens streams and never reads them cannot lock browsers
// out. It must be positive.
func WithMaxClients(n int) Option { return func(o *options) { o.maxClients = n } }

// WithWriteTimeout bounds each write of an event (DefaultWriteTimeout when
// not given). It must be positive.
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithHeartbeat sets how often an idle stream gets a comment line
// (DefaultHeartbeat when not given). It must be positive.
func WithHeartbeat(d time.Duration) Option { return func(o *options) { o.heartbeat = d } }

// WithMaxFollowed sets how many services are followed, one watch each,
// on a Registry that is not a RegistryFollower (DefaultMaxFollowed when
// not given); the page says how many are left out. It must be positive.
func WithMaxFollowed(n int) Option { return func(o *options) { o.maxFollowed = n } }

// WithAllowedHosts names the hosts a request may name in its Host header
// besides IP addresses (and, over loopback, localhost): the names the
// view is reached by, when it listens on an address other than loopback.
// A request naming any other host gets 403 Forbidden, so that a web site
// cannot read the view through DNS rebinding. A name is a host without a
// port; each must be valid.
func WithAllowedHosts(hosts ...string) Option {
	return func(o *options) { o.allowedHosts = append(o.allowedHosts, hosts...) }
}

func buildOptions(opts []Option) (options, error) {
	o := options{
		rescan:         DefaultRescanInterval,
		requestTimeout: DefaultRequestTimeout,
		maxClients:     DefaultMaxClients,
		writeTimeout:   DefaultWriteTimeout,
		heartbeat:      DefaultHeartbeat,
		maxFollowed:    DefaultMaxFollowed,
	}
	for _, opt := range opts {
		opt(&o)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"rescan interval", o.rescan},
		{"request timeout", o.requestTimeout},
		{"write timeout", o.writeTimeout},
		{"heartbeat", o.heartbeat},
	} {
		if d.v <= 0 {
			return options{}, fmt.Errorf("%w: %s %v: want a positive duration", ErrInvalidOption, d.name, d.v)
		}
	}
	if o.maxClients <= 0 {
		return options{}, fmt.Errorf("%w: max clients %d: want a positive number", ErrInvalidOption, o.maxClients)
	}
	if o.maxFollowed <= 0 {
		return options{}, fmt.Errorf("%w: max followed %d: want a positive number", ErrInvalidOption, o.maxFollowed)
	}
	for _, host := range o.allowedHosts {
		if err := hostcheck.ValidName(host); err != nil {
			return options{}, fmt.Errorf("%w: allowed host: %w", ErrInvalidOption, err)
		}
	}
	if o.logger == nil {
		o.logger = hclog.New(&hclog.LoggerOptions{Name: "webui", Level: hclog.Warn})
	}
	return o, nil
}

//go:embed assets
var assetFS embed.FS

// contentSecurityPolicy lets the page load its script, style sheet and
// event stream from the server itself, and nothing else: no inline script
// or style, no other origin, no frames, no forms.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the web view: the page at /, its assets, and the event
// stream at /events. It is an http.Handler; Close stops it.
type Handler struct {
	hub    *hub
	assets http.Handler
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler showing reg, and starts following reg at once. The
// caller must Close it. An invalid option gives an error wrapping
// ErrInvalidOption.
func New(reg Registry, opts ...Option) (*Handler, error) {
	if reg == nil {
		return nil, fmt.Errorf("%w: nil Registry", ErrInvalidOption)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, fmt.Errorf("webui: assets: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		hub:    newHub(ctx, reg, o),
		assets: http.FileServerFS(sub),
		cancel: cancel,
	}
	h.hub.start(&h.wg)
	return h, nil
}

// Close ends every event stream, stops following the registry and returns
// once every goroutine the Handler started has ended. Streams still being
// served return promptly. Close is idempotent.
func (h *Handler) Close() error {
	h.once.Do(func() {
		h.cancel()
		h.wg.Wait()
	})
	return nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !hostcheck.Allowed(r, h.hub.o.allowedHosts) {
		http.Error(w, "forbidden: "+hostcheck.Reason, http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the web view is read-only", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/events":
		h.hub.serveEvents(w, r)
	case "/", "/index.html", "/app.js", "/style.css", "/favicon.svg":
		hdr.Set("Cache-Control", "no-cache")
		h.assets.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}
