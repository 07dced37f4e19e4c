package etcdtest

import (
	"io"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/roster-sd/roster/backends/etcd/embedded"
)

// The server, cluster and proxy are package embedded's; etcdtest names them
// so that tests keep writing etcdtest.Server, and adds the test shorthands.
type (
	// Server is a single-member etcd, or one member of a Cluster: see
	// embedded.Server.
	Server = embedded.Server
	// Cluster is a multi-member etcd: see embedded.Cluster.
	Cluster = embedded.Cluster
	// Proxy is a TCP proxy that can cut, hold and slow down traffic: see
	// embedded.Proxy.
	Proxy = embedded.Proxy
	// Option configures a Server or a Cluster: see embedded.Option.
	Option = embedded.Option
	// Backup is a copy of a server's data taken by Server.Backup, for
	// Server.RestoreBackup: see embedded.Backup.
	Backup = embedded.Backup
)

// Defaults, tuned for tests: see package embedded.
const (
	DefaultReadyTimeout  = embedded.DefaultReadyTimeout
	DefaultDialTimeout   = embedded.DefaultDialTimeout
	DefaultLeaderTimeout = embedded.DefaultLeaderTimeout
)

// ErrClosed is returned by Server.Restart after Close.
var ErrClosed = embedded.ErrClosed

// ErrNotSingle is returned by Server.Wipe, Backup and RestoreBackup on a
// member of a Cluster: see embedded.ErrNotSingle.
var ErrNotSingle = embedded.ErrNotSingle

// ErrForeignBackup is returned by Server.RestoreBackup given another
// server's backup: see embedded.ErrForeignBackup.
var ErrForeignBackup = embedded.ErrForeignBackup

// New starts a single-member etcd: see embedded.New. The caller must Close
// it.
func New(opts ...Option) (*Server, error) { return embedded.New(opts...) }

// NewCluster starts an n-member etcd cluster: see embedded.NewCluster. The
// caller must Close it.
func NewCluster(n int, opts ...Option) (*Cluster, error) { return embedded.NewCluster(n, opts...) }

// NewProxy starts a proxy to target: see embedded.NewProxy. The caller must
// Close it.
func NewProxy(target string) (*Proxy, error) { return embedded.NewProxy(target) }

// WithTLS makes etcd serve clients over TLS only: see embedded.WithTLS.
func WithTLS() Option { return embedded.WithTLS() }

// WithAuth enables etcd's authentication with user and password: see
// embedded.WithAuth.
func WithAuth(user, password string) Option { return embedded.WithAuth(user, password) }

// WithDataDir stores etcd's data in dir: see embedded.WithDataDir.
func WithDataDir(dir string) Option { return embedded.WithDataDir(dir) }

// WithClientPort makes etcd serve clients on 127.0.0.1:port: see
// embedded.WithClientPort.
func WithClientPort(port int) Option { return embedded.WithClientPort(port) }

// WithQuotaBackendBytes sets etcd's storage quota: see
// embedded.WithQuotaBackendBytes.
func WithQuotaBackendBytes(n int64) Option { return embedded.WithQuotaBackendBytes(n) }

// WithLogOutput writes etcd's server logs to w: see embedded.WithLogOutput.
func WithLogOutput(w io.Writer) Option { return embedded.WithLogOutput(w) }

// WithLogger hands etcd's server logs to lg, for example
// zaptest.NewLogger(t): see embedded.WithLogger.
func WithLogger(lg *zap.Logger) Option { return embedded.WithLogger(lg) }

// Start is New for tests: it fails t if the server cannot start and closes
// the server when t and its subtests have finished.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("etcdtest: start etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("etcdtest: close etcd: %v", err)
		}
	})
	return s
}

// StartCluster is NewCluster for tests: it fails t if the cluster cannot
// start and closes the cluster when t and its subtests have finished.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c, err := NewCluster(n, opts...)
	if err != nil {
		t.Fatalf("etcdtest: start etcd cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("etcdtest: close etcd cluster: %v", err)
		}
	})
	return c
}

// Client returns a new client for s (a Server or a Cluster), made from its
// ClientConfig and closed when t and its subtests have finished. It fails t
// if the client cannot be made.
func Client(t testing.TB, s interface{ ClientConfig() clientv3.Config }) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(s.ClientConfig())
	if err != nil {
		t.Fatalf("etcdtest: new client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// StartProxy is NewProxy for tests: it fails t if the proxy cannot start
// and closes the proxy when t and its subtests have finished.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatalf("etcdtest: start proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("etcdtest: close proxy: %v", err)
		}
	})
	return p
}
