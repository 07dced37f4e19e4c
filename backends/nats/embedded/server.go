package embedded

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

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotRunning is wrapped by the error of Restart after Close.
var ErrNotRunning = errors.New("embedded: server not running")

// Server is one embedded nats-server with JetStream. Its methods are safe
// for concurrent use.
type Server struct {
	o        options
	storeDir string
	ownsDir  bool
	member   *member // nil for a single server
	cert     *tls.Certificate
	roots    *x509.CertPool // trusts cert; nil without TLS
	operator *operator      // WithOperator's trust chain; nil without

	mu     sync.Mutex
	srv    *server.Server // nil while stopped
	port   int
	closed bool
}

// New starts a server with JetStream on a free port of 127.0.0.1 and
// returns once it accepts connections. The caller must Close it.
func New(opts ...Option) (*Server, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	port := server.RANDOM_PORT
	if o.port != 0 {
		port = o.port
	}
	s := &Server{o: o, storeDir: o.storeDir, port: port}
	if o.tls {
		cert, roots, err := selfSigned()
		if err != nil {
			return nil, err
		}
		s.cert, s.roots = &cert, roots
	}
	if o.operator {
		if s.operator, err = newOperator(); err != nil {
			return nil, err
		}
	}
	if s.storeDir == "" {
		dir, err := os.MkdirTemp("", "roster-nats-")
		if err != nil {
			s.removeCredentials()
			return nil, fmt.Errorf("embedded: store directory: %w", err)
		}
		s.storeDir, s.ownsDir = dir, true
	}
	if err := s.start(); err != nil {
		if s.ownsDir {
			os.RemoveAll(s.storeDir)
		}
		s.removeCredentials()
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
	if s.o.nkeyUser != "" {
		so.Nkeys = []*server.NkeyUser{{Nkey: s.o.nkeyUser}}
	}
	if s.cert != nil {
		so.TLS = true
		so.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS12}
		so.TLSTimeout = 2
	}
	if m := s.member; m != nil {
		so.ServerName = m.name
		so.Cluster = server.ClusterOpts{Name: m.cluster, Host: "127.0.0.1", Port: m.clusterPort, NoAdvertise: s.o.noAdvertise}
		so.Routes = m.routes
	}
	return so
}

// start runs the server; s.mu is held or s is not shared yet.
func (s *Server) start() error {
	if s.port > 0 {
		// nats-server only logs a port it cannot bind, and would then
		// leave start waiting out ReadyTimeout: say it at once.
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
		if err != nil {
			return fmt.Errorf("embedded: serve on port %d: %w", s.port, err)
		}
		_ = ln.Close()
	}
	so := s.serverOptions()
	if s.operator != nil {
		if err := s.operator.apply(so); err != nil {
			return err
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return fmt.Errorf("embedded: new server: %w", err)
	}
	if s.o.logOutput != nil {
		l := &lineLogger{mu: s.o.logMu, w: s.o.logOutput}
		if s.member != nil {
			l.prefix = s.member.name + " "
		}
		srv.SetLogger(l, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("embedded: server not ready for connections within %v", ReadyTimeout)
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("embedded: server listens on %v, not TCP", srv.Addr())
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
		return fmt.Errorf("embedded: restart: %w", ErrNotRunning)
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
	s.removeCredentials()
	if s.ownsDir {
		if err := os.RemoveAll(s.storeDir); err != nil {
			return fmt.Errorf("embedded: remove store directory: %w", err)
		}
	}
	return nil
}
