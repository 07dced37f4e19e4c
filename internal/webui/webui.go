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

// Defaults of the options.
const (
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
	requestTimeout time.Duration
	maxClients     int
	writeTimeout   time.Duration
	heartbeat      time.Duration
	allowedHosts   []string
}

// WithName sets what the page names as the registry it shows, such as
// "etcd 127.0.0.1:2379 /roster/services". Empty by default.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithLogger sets the logger; nil (the default) logs warnings to stderr
// under the name "webui".
func WithLogger(l hclog.Logger) Option { return func(o *options) { o.logger = l } }

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

// New returns a Handler showing the registry that view sees, and starts
// following it at once (view.FollowRegistry, called again a second after
// it fails). The caller must Close it. An invalid option gives an error
// wrapping ErrInvalidOption.
func New(view discovery.OperatorView, opts ...Option) (*Handler, error) {
	if view == nil {
		return nil, fmt.Errorf("%w: nil OperatorView", ErrInvalidOption)
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
		hub:    newHub(ctx, view, o),
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
