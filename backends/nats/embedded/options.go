package embedded

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ReadyTimeout bounds how long New, NewCluster and Restart wait for a
// server to accept connections, and NewCluster for JetStream to count
// every node as a peer.
const ReadyTimeout = 10 * time.Second

// Option configures a Server or a Cluster.
type Option func(*options)

type options struct {
	user, password string
	token          string
	nkeyUser       string // WithNKeyUser's public key
	operator       bool   // WithOperator
	storeDir       string
	tls            bool
	port           int
	noAdvertise    bool // WithNoAdvertise
	logOutput      io.Writer
	logMu          *sync.Mutex // serializes writes to logOutput
	errs           []error
}

// buildOptions applies opts and checks them; an invalid one is an error
// naming it.
func buildOptions(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := o.checkAuth(); err != nil {
		o.errs = append(o.errs, err)
	}
	if err := errors.Join(o.errs...); err != nil {
		return o, fmt.Errorf("embedded: invalid option: %w", err)
	}
	if o.logOutput != nil {
		o.logMu = new(sync.Mutex)
	}
	return o, nil
}

// WithUser makes the server require a user name and password, both
// non-empty. It excludes WithToken, WithNKeyUser and WithOperator.
func WithUser(user, password string) Option {
	return func(o *options) {
		if user == "" || password == "" {
			o.errs = append(o.errs, errors.New("WithUser: user and password must not be empty"))
			return
		}
		o.user, o.password = user, password
	}
}

// WithToken makes the server require an authentication token, which must
// not be empty. It excludes WithUser, WithNKeyUser and WithOperator.
func WithToken(token string) Option {
	return func(o *options) {
		if token == "" {
			o.errs = append(o.errs, errors.New("WithToken: empty token"))
			return
		}
		o.token = token
	}
}

// WithStoreDir makes JetStream store into dir, which the Server then
// neither creates nor removes, so a later New with the same dir finds the
// same data. Default: a fresh temporary directory that Close removes. It
// does not apply to a Cluster.
func WithStoreDir(dir string) Option {
	return func(o *options) {
		if dir == "" {
			o.errs = append(o.errs, errors.New("WithStoreDir: empty directory"))
			return
		}
		o.storeDir = dir
	}
}

// WithTLS makes the server require TLS with a fresh self-signed
// certificate for 127.0.0.1 and localhost; clients trust it through
// Server.ClientTLSConfig. It does not apply to a Cluster.
func WithTLS() Option {
	return func(o *options) { o.tls = true }
}

// WithPort makes the server serve clients on 127.0.0.1:port instead of a
// free port chosen at start. It does not apply to a Cluster.
func WithPort(port int) Option {
	return func(o *options) {
		if port < 1 || port > 65535 {
			o.errs = append(o.errs, fmt.Errorf("WithPort: port %d out of range 1..65535", port))
			return
		}
		o.port = port
	}
}

// WithNoAdvertise keeps the nodes of a Cluster from telling clients the
// addresses of the other nodes (nats-server's cluster no_advertise), so
// that a client reaches only the URLs it was given: through fault
// proxies, say, which a discovered address would bypass. It does nothing
// to a single server.
func WithNoAdvertise() Option {
	return func(o *options) { o.noAdvertise = true }
}

// WithLogOutput writes the server's own logs (notices, warnings and
// errors; no debug or trace lines) to w, one line each, prefixed with the
// node's name in a Cluster. By default they are discarded. Writes to w
// are serialized.
func WithLogOutput(w io.Writer) Option {
	return func(o *options) {
		if w == nil {
			o.errs = append(o.errs, errors.New("WithLogOutput: nil writer"))
			return
		}
		o.logOutput = w
	}
}

// lineLogger is the nats-server Logger of WithLogOutput.
type lineLogger struct {
	mu     *sync.Mutex // shared by the nodes of a Cluster, which write to one w
	w      io.Writer
	prefix string
}

func (l *lineLogger) logf(level, format string, v []any) {
	line := l.prefix + level + " " + fmt.Sprintf(format, v...) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

func (l *lineLogger) Noticef(format string, v ...any) { l.logf("[INF]", format, v) }
func (l *lineLogger) Warnf(format string, v ...any)   { l.logf("[WRN]", format, v) }
func (l *lineLogger) Fatalf(format string, v ...any)  { l.logf("[FTL]", format, v) }
func (l *lineLogger) Errorf(format string, v ...any)  { l.logf("[ERR]", format, v) }
func (l *lineLogger) Debugf(string, ...any)           {}
func (l *lineLogger) Tracef(string, ...any)           {}
