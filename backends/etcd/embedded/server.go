package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/internal/freeport"
)

// ErrClosed is returned by Server.Restart after Close.
var ErrClosed = errors.New("embedded: closed")

// Server is one etcd member running in this process: either a single-member
// etcd made by New (or etcdtest.Start), or one of the members of a Cluster.
//
// A Server keeps its client and peer ports and its data directory for its
// whole life, across Stop and Restart. Its methods are safe for concurrent
// use.
type Server struct {
	name           string
	opts           options
	clientURL      url.URL
	peerURL        url.URL // where etcd listens for peers
	advPeerURL     url.URL // what it tells its peers: peerURL, or a relay to it
	dataDir        string
	initialCluster string
	clusterToken   string
	pki            *pki     // nil without WithTLS
	ownedDirs      []string // temporary directories removed by Close
	peerGate       gate     // relay in front of the peer port in a Cluster, or nil

	opMu sync.Mutex // serializes start, Stop, Kill, Restart and Close

	mu     sync.Mutex // guards run and closed
	run    *run       // nil while stopped
	closed bool
}

// gate is a link that can be cut and restored.
type gate interface {
	Reject() // refuse new connections and close the open ones
	Accept() // accept connections again
}

// run is one start of etcd: the embedded server and the gRPC servers it
// serves clients with, captured through embed.Config.ServiceRegister so
// that stopping can cut client streams at once. (etcd's own Close lets
// them run for up to 6 s, its request timeout, before it cuts them.)
type run struct {
	e *embed.Etcd

	mu         sync.Mutex
	grpcs      []*grpc.Server
	registered chan struct{} // closed when the first gRPC server is known
}

func newRun() *run { return &run{registered: make(chan struct{})} }

// register is the embed.Config.ServiceRegister hook.
func (r *run) register(gs *grpc.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.grpcs = append(r.grpcs, gs)
	if len(r.grpcs) == 1 {
		close(r.registered)
	}
}

// stop cuts every client connection, stops etcd and waits until it has
// stopped. With hard, raft stops at once, as in a crash: a leader does
// not hand over leadership first. peersDown, if not nil, is called once
// raft has stopped, to cut the member's peer connections.
func (r *run) stop(hard bool, peersDown func()) {
	r.mu.Lock()
	grpcs := r.grpcs
	r.mu.Unlock()
	for _, gs := range grpcs {
		gs.Stop()
	}
	if hard {
		r.e.Server.HardStop()
	} else {
		r.e.Server.Stop() // hands leadership over first
	}
	// Without this, Close would wait a second for the peers' open
	// connections before giving up on them.
	if peersDown != nil {
		peersDown()
	}
	// Close stops what is left (HTTP servers, listeners) and waits for
	// etcd's goroutines; raft is already stopped, so it transfers nothing.
	r.e.Close()
	<-r.e.Server.StopNotify()
}

// New starts a single-member etcd on free loopback ports and returns once it
// is ready to serve clients, or with an error after DefaultReadyTimeout.
// The caller must Close it.
func New(opts ...Option) (*Server, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return withFreshPorts(o, func() (*Server, error) { return newSingle(o) })
}

// newSingle is New with its options built.
func newSingle(o options) (_ *Server, err error) {
	ports, err := freeport.Reserve(2)
	if err != nil {
		return nil, err
	}
	clientPort, peerPort := ports[0], ports[1]
	if o.clientPort != 0 {
		clientPort = o.clientPort
	}

	var owned []string
	defer func() {
		if err != nil {
			removeAll(owned)
		}
	}()
	var p *pki
	if o.tls {
		if p, err = newPKI(); err != nil {
			return nil, err
		}
		owned = append(owned, p.dir)
	}
	dataDir, owned, err := prepareDataDir(o.dataDir, "", owned)
	if err != nil {
		return nil, err
	}

	const name = singleName
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	s := newServer(name, o, p, clientPort, peerPort, dataDir)
	s.initialCluster = name + "=" + s.peerURL.String()
	s.clusterToken = token
	s.ownedDirs = owned

	s.opMu.Lock()
	err = s.start()
	s.opMu.Unlock()
	if err != nil {
		return nil, err
	}
	if o.user != "" {
		if err := setupAuth(s.baseClientConfig(s.Endpoints()), o.user, o.password); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

func newServer(name string, o options, p *pki, clientPort, peerPort int, dataDir string) *Server {
	scheme := "http"
	if p != nil {
		scheme = "https"
	}
	return &Server{
		name:       name,
		opts:       o,
		pki:        p,
		dataDir:    dataDir,
		clientURL:  url.URL{Scheme: scheme, Host: loopback(clientPort)},
		peerURL:    url.URL{Scheme: "http", Host: loopback(peerPort)},
		advPeerURL: url.URL{Scheme: "http", Host: loopback(peerPort)},
	}
}

// singleName is the member name of the etcd that New starts. It is kept
// in the data directory; users see "etcd" instead (see label).
const singleName = "etcdtest"

// label names the server in errors and logs: "etcd" for the single server
// New starts (roster dev's and etcdtest's), "etcd member m1" in a Cluster.
func (s *Server) label() string {
	if s.name == singleName {
		return "etcd"
	}
	return "etcd member " + s.name
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// loopbackHosts is etcd's HostWhitelist: the names of the loopback
// addresses etcd listens on. An HTTP request carrying any other Host
// (a DNS-rebinding page's) gets 421; requests over TLS are not checked.
func loopbackHosts() map[string]struct{} {
	return map[string]struct{}{"127.0.0.1": {}, "localhost": {}, "::1": {}}
}

// noCORS is etcd's CORS setting that allows no origin. An empty set would
// allow every origin, so it holds one entry that no browser sends as an
// Origin (those are "null" or scheme://host[:port]).
func noCORS() map[string]struct{} {
	return map[string]struct{}{"roster-no-cross-origin-access": {}}
}

// prepareDataDir returns dir/sub, creating it, or a fresh temporary
// directory (appended to owned) when dir is empty.
func prepareDataDir(dir, sub string, owned []string) (string, []string, error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "etcdtest-data-")
		if err != nil {
			return "", owned, fmt.Errorf("embedded: create data directory: %w", err)
		}
		return tmp, append(owned, tmp), nil
	}
	dir = filepath.Join(dir, sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", owned, fmt.Errorf("embedded: create data directory: %w", err)
	}
	return dir, owned, nil
}

func removeAll(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("embedded: remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// embedConfig builds a fresh etcd configuration for this member. A new one
// is built for every start because etcd fills in parts of it while
// starting.
func (s *Server) embedConfig(r *run) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = s.name
	cfg.Dir = s.dataDir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.advPeerURL}
	cfg.InitialCluster = s.initialCluster
	cfg.InitialClusterToken = s.clusterToken
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored once the data directory holds a member
	cfg.TickMs = heartbeatMs
	cfg.ElectionMs = electionMs
	if s.opts.heartbeat > 0 {
		cfg.TickMs = uint(s.opts.heartbeat / time.Millisecond)
		cfg.ElectionMs = uint(s.opts.election / time.Millisecond)
	}
	cfg.UnsafeNoFsync = true
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "0" // off
	cfg.BcryptCost = bcryptCost
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(s.opts.logger.Named(strings.ReplaceAll(s.label(), " ", ".")))
	cfg.ServiceRegister = r.register
	cfg.QuotaBackendBytes = s.opts.quota
	// Closed to web pages: etcd's defaults (a JSON gateway, CORS "*", any
	// Host) let any page the developer opens write and read this registry
	// with a simple text/plain POST, or through a DNS-rebinding name.
	// roster's clients speak gRPC, which none of this touches.
	cfg.EnableGRPCGateway = false
	cfg.HostWhitelist = loopbackHosts()
	cfg.CORS = noCORS()
	if s.pki != nil {
		cfg.ClientTLSInfo = s.pki.serverTLSInfo()
	}
	return cfg
}

// start starts etcd and waits until it is ready. Members of a cluster only
// become ready once a quorum of them runs. The caller holds opMu.
func (s *Server) start() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}

	if s.peerGate != nil {
		s.peerGate.Accept()
	}
	r := newRun()
	e, err := embed.StartEtcd(s.embedConfig(r))
	if err != nil {
		return fmt.Errorf("embedded: start %s on %s: %w", s.label(), s.clientURL.Host, err)
	}
	r.e = e
	timer := time.NewTimer(DefaultReadyTimeout)
	defer timer.Stop()
	// etcd is ready once raft has published this member; its gRPC server
	// is registered just after, and waiting for it lets stop always find it.
	for _, ready := range []<-chan struct{}{e.Server.ReadyNotify(), r.registered} {
		select {
		case <-ready:
		case err := <-e.Err():
			r.stop(true, s.peersDown())
			if err == nil {
				err = errors.New("stopped before it was ready")
			}
			return fmt.Errorf("embedded: start %s on %s: %w", s.label(), s.clientURL.Host, err)
		case <-timer.C:
			r.stop(true, s.peersDown())
			return fmt.Errorf("embedded: start %s on %s: not ready after %v", s.label(), s.clientURL.Host, DefaultReadyTimeout)
		}
	}

	s.mu.Lock()
	s.run = r
	s.mu.Unlock()
	return nil
}

// stop stops etcd if it runs. The caller holds opMu.
func (s *Server) stop(hard bool) {
	s.mu.Lock()
	r := s.run
	s.run = nil
	s.mu.Unlock()
	if r != nil {
		r.stop(hard, s.peersDown())
	}
}

// peersDown returns the function that cuts the member's peer links, or
// nil outside a Cluster.
func (s *Server) peersDown() func() {
	if s.peerGate == nil {
		return nil
	}
	return s.peerGate.Reject
}

// Endpoints returns the address etcd serves clients on, as
// clientv3.Config.Endpoints expects it: host:port without a scheme, for
// example "127.0.0.1:41234". It does not change across Stop and Restart.
func (s *Server) Endpoints() []string { return []string{s.clientURL.Host} }

// ClientURL returns the URL etcd serves clients on, with its scheme:
// "http://127.0.0.1:41234", or "https://..." with WithTLS. This is the form
// etcdctl's --endpoints and the ETCDCTL_ENDPOINTS variable accept.
func (s *Server) ClientURL() string { return s.clientURL.String() }

// ClientConfig returns a client configuration for this server: its
// endpoint, a DialTimeout of DefaultDialTimeout, the TLS client
// configuration with WithTLS, the credentials with WithAuth, and a logger
// that discards everything.
func (s *Server) ClientConfig() clientv3.Config {
	cfg := s.baseClientConfig(s.Endpoints())
	cfg.Username, cfg.Password = s.opts.user, s.opts.password
	return cfg
}

// baseClientConfig is ClientConfig for the given endpoints, without
// credentials.
func (s *Server) baseClientConfig(endpoints []string) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: DefaultDialTimeout,
		TLS:         s.TLSConfig(),
		Logger:      zap.NewNop(),
	}
}

// TLSConfig returns a new client-side TLS configuration that trusts the
// generated CA and presents the generated client certificate, or nil
// without WithTLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.pki == nil {
		return nil
	}
	return s.pki.clientTLSConfig()
}

// CAFile returns the path of the generated CA certificate (PEM), or ""
// without WithTLS. The PEM files live in a temporary directory of their own
// that Close (of the Cluster, for a member) removes.
func (s *Server) CAFile() string {
	if s.pki == nil {
		return ""
	}
	return s.pki.caFile
}

// CertFile returns the path of the generated client certificate (PEM), or
// "" without WithTLS.
func (s *Server) CertFile() string {
	if s.pki == nil {
		return ""
	}
	return s.pki.clientCertFile
}

// KeyFile returns the path of the generated client certificate's private
// key (PEM, PKCS #8), or "" without WithTLS.
func (s *Server) KeyFile() string {
	if s.pki == nil {
		return ""
	}
	return s.pki.clientKeyFile
}

// DataDir returns etcd's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// Stop stops etcd as a clean shutdown does: client connections are closed
// at once (clients then fail to connect until Restart), and a cluster
// leader hands leadership over to another member before it stops. The
// ports and the data directory are kept, so Restart brings the same server
// back. Stop returns once etcd has fully stopped; stopping a stopped or
// closed server does nothing.
func (s *Server) Stop() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.stop(false)
	return nil
}

// Kill stops etcd as a crash would, as far as the other members of a
// cluster can tell: raft stops at once, so a leader does not hand over
// leadership and the others elect a new leader only after their election
// timeout. Otherwise it is Stop: clients see their connections closed, and
// Restart brings the server back with its data.
func (s *Server) Kill() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.stop(true)
	return nil
}

// Restart starts etcd again on the same client and peer addresses and the
// same data directory, and returns once it is ready. A running server is
// stopped first, so Restart also works as a "bounce". Keys, leases, users
// and the authentication setting survive; etcd extends the TTL of the
// leases it restores. A member of a cluster only becomes ready once a
// quorum of members runs. Restart returns ErrClosed after Close.
func (s *Server) Restart() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.stop(false)
	return s.start()
}

// Running reports whether etcd is running and ready.
func (s *Server) Running() bool { return s.Etcd() != nil }

// Etcd returns the underlying etcd while it runs, nil while it is stopped.
func (s *Server) Etcd() *embed.Etcd {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	return s.run.e
}

// Close stops etcd, as Kill does, and removes the temporary directories
// created for it (not one given with WithDataDir). It is safe to call more
// than once.
func (s *Server) Close() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop(true)
	return removeAll(s.ownedDirs)
}

// setupAuth creates user (and "root" if user is someone else) with
// password and the root role, and enables authentication. It does nothing
// if authentication is already enabled, as it is in a reused data
// directory.
func setupAuth(cfg clientv3.Config, user, password string) error {
	cli, err := clientv3.New(cfg)
	if err != nil {
		return fmt.Errorf("embedded: enable auth: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultReadyTimeout)
	defer cancel()

	st, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("embedded: enable auth: status: %w", err)
	}
	if st.Enabled {
		return nil
	}
	users := []string{user}
	if user != "root" {
		users = append(users, "root")
	}
	for _, u := range users {
		if _, err := cli.UserAdd(ctx, u, password); errors.Is(err, rpctypes.ErrUserAlreadyExist) {
			_, err = cli.UserChangePassword(ctx, u, password)
			if err != nil {
				return fmt.Errorf("embedded: enable auth: set password of %q: %w", u, err)
			}
		} else if err != nil {
			return fmt.Errorf("embedded: enable auth: add user %q: %w", u, err)
		}
		if _, err := cli.UserGrantRole(ctx, u, "root"); err != nil {
			return fmt.Errorf("embedded: enable auth: grant root role to %q: %w", u, err)
		}
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("embedded: enable auth: %w", err)
	}
	return nil
}
