package embedded

import (
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults, tuned for tests rather than production.
const (
	// DefaultReadyTimeout bounds how long New, NewCluster and Restart wait
	// for etcd to report that it is ready to serve clients.
	DefaultReadyTimeout = 60 * time.Second

	// DefaultDialTimeout is the DialTimeout of the client configurations
	// returned by ClientConfig.
	DefaultDialTimeout = 5 * time.Second

	// DefaultLeaderTimeout bounds how long Cluster.Leader and
	// Cluster.StopLeader wait for a leader.
	DefaultLeaderTimeout = 10 * time.Second

	// heartbeatMs and electionMs are etcd's heartbeat interval and election
	// timeout. They are a tenth of etcd's defaults so that a cluster elects a
	// new leader within about a second after losing the old one, while
	// leaving room for the scheduling noise of -race on a small machine.
	heartbeatMs = 50
	electionMs  = 500

	// bcryptCost is the cost of hashing passwords with WithAuth: the minimum
	// bcrypt allows (4) instead of etcd's default (10), so that each
	// authentication takes microseconds rather than tens of milliseconds.
	bcryptCost = 4
)

// Option configures a Server or a Cluster.
type Option func(*options)

type options struct {
	tls        bool
	user       string
	password   string
	dataDir    string
	clientPort int
	quota      int64
	heartbeat  time.Duration // 0: heartbeatMs
	election   time.Duration // 0: electionMs
	logger     *zap.Logger
	errs       []error
}

func buildOptions(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := errors.Join(o.errs...); err != nil {
		return o, fmt.Errorf("embedded: invalid option: %w", err)
	}
	if o.logger == nil {
		o.logger = zap.NewNop()
	}
	return o, nil
}

// WithTLS makes etcd serve clients over TLS only. At start, a private CA, a
// server certificate (valid for 127.0.0.1 and localhost) and a client
// certificate (common name "roster-client") are generated, and etcd requires
// every client to present a certificate signed by that CA. ClientConfig and
// TLSConfig carry the client certificate; CAFile, CertFile and KeyFile give
// the same material as PEM files, for command-line tools and environment
// variables.
//
// Peer traffic between the members of a Cluster stays on plain HTTP.
func WithTLS() Option {
	return func(o *options) { o.tls = true }
}

// WithAuth enables etcd's authentication. At start, user is created with
// password and granted the root role, and authentication is enabled; from
// then on every client must log in, which ClientConfig does with these
// credentials. etcd only enables authentication once a user named "root"
// exists, so when user is not "root", a "root" user with the same password
// is created as well. Authentication stays enabled across Stop and Restart,
// since it is stored in the data directory.
//
// Both user and password must be non-empty.
func WithAuth(user, password string) Option {
	return func(o *options) {
		if user == "" || password == "" {
			o.errs = append(o.errs, errors.New("WithAuth: user and password must not be empty"))
			return
		}
		o.user, o.password = user, password
	}
}

// WithDataDir stores etcd's data in dir instead of a fresh temporary
// directory. The directory is created if needed and is left in place by
// Close, so a later New with the same dir finds the same data. A Cluster
// uses one sub-directory per member, named after the member ("m0", "m1",
// ...), and keeps it across Stop and Restart of the member; but since a
// cluster's data records the members' peer addresses, which are new each
// time, NewCluster refuses a directory that holds a previous cluster.
func WithDataDir(dir string) Option {
	return func(o *options) {
		if dir == "" {
			o.errs = append(o.errs, errors.New("WithDataDir: empty directory"))
			return
		}
		o.dataDir = dir
	}
}

// WithClientPort makes etcd serve clients on 127.0.0.1:port instead of a
// free port chosen at start. In a Cluster, member i serves on port+i.
func WithClientPort(port int) Option {
	return func(o *options) {
		if port < 1 || port > 65535 {
			o.errs = append(o.errs, fmt.Errorf("WithClientPort: port %d out of range 1..65535", port))
			return
		}
		o.clientPort = port
	}
}

// WithQuotaBackendBytes sets etcd's storage quota (--quota-backend-bytes),
// so that a test can fill it and see etcd raise its NOSPACE alarm, under
// which it refuses writes but serves reads and deletes.
func WithQuotaBackendBytes(n int64) Option {
	return func(o *options) {
		if n <= 0 {
			o.errs = append(o.errs, fmt.Errorf("embedded: WithQuotaBackendBytes(%d): want a positive size", n))
			return
		}
		o.quota = n
	}
}

// WithRaftTiming sets etcd's heartbeat interval and election timeout
// (etcd's --heartbeat-interval and --election-timeout). By default they
// are a tenth of etcd's defaults (50 ms and 500 ms), for tests that want a
// new leader quickly; etcd's own defaults (100 ms and 1 s) are what a
// production cluster runs, and ride out more scheduling delay on a busy
// machine before calling an election. The election timeout must be at
// least five heartbeats.
func WithRaftTiming(heartbeat, election time.Duration) Option {
	return func(o *options) {
		if heartbeat < time.Millisecond || election < 5*heartbeat {
			o.errs = append(o.errs, fmt.Errorf("WithRaftTiming: heartbeat %v, election %v: want a heartbeat of at least 1ms and an election timeout of at least 5 heartbeats", heartbeat, election))
			return
		}
		o.heartbeat, o.election = heartbeat, election
	}
}

// WithLogOutput writes etcd's server logs, at info level and above, to w as
// human-readable lines. By default they are discarded.
func WithLogOutput(w io.Writer) Option {
	return func(o *options) {
		if w == nil {
			o.errs = append(o.errs, errors.New("WithLogOutput: nil writer"))
			return
		}
		enc := zap.NewDevelopmentEncoderConfig()
		core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zapcore.InfoLevel)
		o.logger = zap.New(core)
	}
}

// WithLogger hands etcd's server logs to lg, for example
// zaptest.NewLogger(t) to see them in the test output. By default they are
// discarded.
func WithLogger(lg *zap.Logger) Option {
	return func(o *options) {
		if lg == nil {
			o.errs = append(o.errs, errors.New("WithLogger: nil logger"))
			return
		}
		o.logger = lg
	}
}
