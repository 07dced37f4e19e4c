package natstest

import (
	"io"
	"testing"

	"github.com/roster-sd/roster/backends/nats/embedded"
)

// The server, cluster and proxy are package embedded's; natstest names
// them so that tests keep writing natstest.Server, and adds the test
// shorthands.
type (
	// Server is one nats-server with JetStream, or one node of a Cluster:
	// see embedded.Server.
	Server = embedded.Server
	// Cluster is an n-node nats-server cluster with JetStream: see
	// embedded.Cluster.
	Cluster = embedded.Cluster
	// Proxy is a TCP proxy that can cut, hold and slow down traffic: see
	// embedded.Proxy.
	Proxy = embedded.Proxy
	// Option configures a Server or a Cluster: see embedded.Option.
	Option = embedded.Option
)

// ReadyTimeout bounds how long New, NewCluster and Restart wait for a
// server: see embedded.ReadyTimeout.
const ReadyTimeout = embedded.ReadyTimeout

// ErrNotRunning is wrapped by the error of Server.Restart after Close.
var ErrNotRunning = embedded.ErrNotRunning

// New starts a nats-server with JetStream: see embedded.New. The caller
// must Close it.
func New(opts ...Option) (*Server, error) { return embedded.New(opts...) }

// NewCluster starts an n-node cluster: see embedded.NewCluster. The
// caller must Close it.
func NewCluster(n int, opts ...Option) (*Cluster, error) { return embedded.NewCluster(n, opts...) }

// NewProxy starts a proxy to target: see embedded.NewProxy. The caller
// must Close it.
func NewProxy(target string) (*Proxy, error) { return embedded.NewProxy(target) }

// WithUser makes the server require a user name and password: see
// embedded.WithUser.
func WithUser(user, password string) Option { return embedded.WithUser(user, password) }

// WithToken makes the server require a token: see embedded.WithToken.
func WithToken(token string) Option { return embedded.WithToken(token) }

// WithNKeyUser makes the server require NKey authentication of the user
// with publicKey: see embedded.WithNKeyUser.
func WithNKeyUser(publicKey string) Option { return embedded.WithNKeyUser(publicKey) }

// WithOperator makes the server use decentralized (JWT) authentication,
// with Server.CredentialsFile for a user: see embedded.WithOperator.
func WithOperator() Option { return embedded.WithOperator() }

// WithStoreDir makes JetStream store into dir: see embedded.WithStoreDir.
func WithStoreDir(dir string) Option { return embedded.WithStoreDir(dir) }

// WithTLS makes the server require TLS: see embedded.WithTLS.
func WithTLS() Option { return embedded.WithTLS() }

// WithPort makes the server serve clients on 127.0.0.1:port: see
// embedded.WithPort.
func WithPort(port int) Option { return embedded.WithPort(port) }

// WithLogOutput writes the server's logs to w: see embedded.WithLogOutput.
func WithLogOutput(w io.Writer) Option { return embedded.WithLogOutput(w) }

// Start is New for tests: it fails t if the server cannot start and closes
// the server when t and its subtests have finished.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("natstest: start nats-server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("natstest: close nats-server: %v", err)
		}
	})
	return s
}

// Restart is Server.Restart for tests: it fails t if the server cannot
// start again.
func Restart(t testing.TB, s *Server) {
	t.Helper()
	if err := s.Restart(); err != nil {
		t.Fatalf("natstest: restart nats-server: %v", err)
	}
}

// StartCluster is NewCluster for tests: it fails t if the cluster cannot
// start and closes the cluster when t and its subtests have finished.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c, err := NewCluster(n, opts...)
	if err != nil {
		t.Fatalf("natstest: start a %d-node nats-server cluster: %v", n, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("natstest: close nats-server cluster: %v", err)
		}
	})
	return c
}

// StartProxy is NewProxy for tests: it fails t if the proxy cannot start
// and closes the proxy when t and its subtests have finished.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatalf("natstest: start proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("natstest: close proxy: %v", err)
		}
	})
	return p
}

// Backup is a copy of a server's JetStream store: see embedded.Backup.
type Backup = embedded.Backup

// Wipe is Server.Wipe for tests: the server comes back on
// the same port without any of its JetStream data. It fails t if the
// server cannot start again.
func Wipe(t testing.TB, s *Server) {
	t.Helper()
	if err := s.Wipe(); err != nil {
		t.Fatalf("natstest: wipe nats-server: %v", err)
	}
}

// TakeBackup is Server.Backup for tests: a copy of the server's JetStream
// store as of now, removed when t and its subtests have finished. It
// fails t if the copy cannot be made.
func TakeBackup(t testing.TB, s *Server) *Backup {
	t.Helper()
	b, err := s.Backup()
	if err != nil {
		t.Fatalf("natstest: back up nats-server: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Release(); err != nil {
			t.Errorf("natstest: %v", err)
		}
	})
	return b
}

// RestoreBackup is Server.RestoreBackup for tests: the server
// comes back on the same port with the data of b, losing every write made
// since. It fails t if the server cannot start again.
func RestoreBackup(t testing.TB, s *Server, b *Backup) {
	t.Helper()
	if err := s.RestoreBackup(b); err != nil {
		t.Fatalf("natstest: restore nats-server from a backup: %v", err)
	}
}

// ErrForeignBackup is returned by Server.RestoreBackup given another
// server's backup: see embedded.ErrForeignBackup.
var ErrForeignBackup = embedded.ErrForeignBackup
