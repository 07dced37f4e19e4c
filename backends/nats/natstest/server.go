package natstest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/roster-sd/roster/internal/faultproxy"
)

// ReadyTimeout bounds how long New and Restart wait for the server to
// accept connections.
const ReadyTimeout = 10 * time.Second

// ErrNotRunning reports a call that needs a running server on a stopped one.
var ErrNotRunning = errors.New("natstest: server not running")

// Proxy is a loopback TCP proxy between clients and one server, which can
// cut, silence and slow down the traffic between them: see
// faultproxy.Proxy.
type Proxy = faultproxy.Proxy

// NewProxy starts a proxy to target (host:port, such as Server.Addr) on a
// free port of 127.0.0.1. The caller must Close it.
func NewProxy(target string) (*Proxy, error) { return faultproxy.New(target) }

// Option configures a Server.
type Option func(*options)

type options struct {
	user, password string
	token          string
	storeDir       string
	tls            bool
}

// WithUser makes the server require a user name and password.
func WithUser(user, password string) Option {
	return func(o *options) { o.user, o.password = user, password }
}

// WithToken makes the server require an authentication token.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithStoreDir makes JetStream store into dir, which the Server then
// neither creates nor removes. Default: a fresh temporary directory that
// Close removes.
func WithStoreDir(dir string) Option {
	return func(o *options) { o.storeDir = dir }
}

// Server is one embedded nats-server with JetStream. Its methods are safe
// for concurrent use.
type Server struct {
	o        options
	storeDir string
	ownsDir  bool
	member   *member // nil for a single server
	cert     *tls.Certificate
	roots    *x509.CertPool // trusts cert; nil without TLS

	mu     sync.Mutex
	srv    *server.Server // nil while stopped
	port   int
	closed bool
}

// New starts a server with JetStream on a free port of 127.0.0.1 and
// returns once it accepts connections. The caller must Close it.
func New(opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.user != "" && o.token != "" {
		return nil, errors.New("natstest: WithUser and WithToken exclude each other")
	}
	s := &Server{o: o, storeDir: o.storeDir, port: server.RANDOM_PORT}
	if o.tls {
		cert, roots, err := selfSigned()
		if err != nil {
			return nil, err
		}
		s.cert, s.roots = &cert, roots
	}
	if s.storeDir == "" {
		dir, err := os.MkdirTemp("", "natstest-")
		if err != nil {
			return nil, fmt.Errorf("natstest: store directory: %w", err)
		}
		s.storeDir, s.ownsDir = dir, true
	}
	if err := s.start(); err != nil {
		if s.ownsDir {
			os.RemoveAll(s.storeDir)
		}
		return nil, err
	}
	return s, nil
}

// member is what a Server of a Cluster knows of the cluster.
type member struct {
	name        string // server name, unique in the cluster
	cluster     string // cluster name
	clusterPort int
	routes      []*url.URL // the other members' cluster ports
}

func (s *Server) serverOptions() *server.Options {
	so := &server.Options{
		Host:          "127.0.0.1",
		Port:          s.port,
		NoLog:         true,
		NoSigs:        true,
		JetStream:     true,
		StoreDir:      s.storeDir,
		Username:      s.o.user,
		Password:      s.o.password,
		Authorization: s.o.token,
		// The HTTP monitor and leaf node ports stay off.
	}
	if s.cert != nil {
		so.TLS = true
		so.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS12}
		so.TLSTimeout = 2
	}
	if m := s.member; m != nil {
		so.ServerName = m.name
		so.Cluster = server.ClusterOpts{Name: m.cluster, Host: "127.0.0.1", Port: m.clusterPort}
		so.Routes = m.routes
	}
	return so
}

// start runs the server; s.mu is held or s is not shared yet.
func (s *Server) start() error {
	srv, err := server.NewServer(s.serverOptions())
	if err != nil {
		return fmt.Errorf("natstest: new server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("natstest: server not ready for connections within %v", ReadyTimeout)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("natstest: server listens on %v, not TCP", srv.Addr())
	}
	s.srv, s.port = srv, addr.Port
	return nil
}

// Addr returns the host:port clients connect to. It stays the same across
// Stop and Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the URL of the server, without credentials: tls:// for a
// server started WithTLS, nats:// otherwise.
func (s *Server) URL() string {
	if s.cert != nil {
		return "tls://" + s.Addr()
	}
	return "nats://" + s.Addr()
}

// StoreDir returns the directory JetStream stores into.
func (s *Server) StoreDir() string { return s.storeDir }

// Running reports whether the server is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil
}

// NATS returns the running nats-server, for what this package does not
// wrap, or nil while stopped.
func (s *Server) NATS() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Stop shuts the server down, closing every client connection, and
// returns once it has stopped. Its data stays in the store directory for
// Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts a stopped server again on the same port with the same
// data, and returns once it accepts connections. It stops a running server
// first.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("natstest: restart: %w", ErrNotRunning)
	}
	s.stopLocked()
	return s.start()
}

// Close stops the server and removes the store directory if New created
// it. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stopLocked()
	if s.ownsDir {
		if err := os.RemoveAll(s.storeDir); err != nil {
			return fmt.Errorf("natstest: remove store directory: %w", err)
		}
	}
	return nil
}
