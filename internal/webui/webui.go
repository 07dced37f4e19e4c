package webui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/discovery"
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
// (DefaultMaxClients when not given); more get 503 Service Unavailable. It
// must be positive.
func WithMaxClients(n int) Option { return func(o *options) { o.maxClients = n } }

// WithWriteTimeout bounds each write of an event (DefaultWriteTimeout when
// not given). It must be positive.
func WithWriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// WithHeartbeat sets how often an idle stream gets a comment line
// (DefaultHeartbeat when not given). It must be positive.
func WithHeartbeat(d time.Duration) Option { return func(o *options) { o.heartbeat = d } }

func buildOptions(opts []Option) (options, error) {
	o := options{
		rescan:         DefaultRescanInterval,
		requestTimeout: DefaultRequestTimeout,
		maxClients:     DefaultMaxClients,
		writeTimeout:   DefaultWriteTimeout,
		heartbeat:      DefaultHeartbeat,
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
	if !hostAllowed(r) {
		http.Error(w, "forbidden: a request over loopback must name a loopback host (localhost or an IP address)", http.StatusForbidden)
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

// hostAllowed guards against DNS rebinding: a request that arrives on a
// loopback address must name a loopback host, since a web page in the
// user's browser can make any name resolve to 127.0.0.1. Requests on
// other addresses (the view was told to listen on one) are not checked.
func hostAllowed(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true // not served by net/http's server (a test calling ServeHTTP)
	}
	if tcp, ok := local.(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
