// Package backends names roster's backends and the ROSTER_* environment
// variables for whoever selects and configures one by name: the fx
// module's Config.Backend and the roster command line. It imports nothing,
// so that a program can read the choice without linking any backend (or
// fx).
//
// Each backend lives in a package below this one (backends/etcd,
// backends/nats, backends/memory) and owns its own settings: its Config,
// and a ConfigFromEnv that reads the variables below that apply to it
// through a lookup function. The variables that every networked backend
// reads (EnvEndpoints, EnvTTL, EnvTimeout, the TLS files and the user and
// password) mean the same for each; the others belong to one backend.
package backends

// EnvBackend is the environment variable that selects a backend by name:
// Etcd, NATS or Memory.
const EnvBackend = "ROSTER_BACKEND"

// Names of the backends, as EnvBackend and the fx module's Config.Backend
// spell them.
const (
	// Etcd names the etcd backend (package backends/etcd).
	Etcd = "etcd"
	// NATS names the NATS JetStream key-value backend (package
	// backends/nats).
	NATS = "nats"
	// Memory names the in-process memory backend (package backends/memory).
	Memory = "memory"
)

// The environment variables the networked backends share. Each backend's
// ConfigFromEnv reads them into its Config's field of the same meaning.
const (
	// EnvEndpoints holds the registry's endpoints, comma-separated: etcd's
	// host:port or URLs, NATS's nats:// or tls:// URLs.
	EnvEndpoints = "ROSTER_ENDPOINTS"
	// EnvTTL holds the time to live of an instance whose process stopped
	// renewing it, a Go duration in whole seconds.
	EnvTTL = "ROSTER_TTL"
	// EnvTimeout holds both the dial and the request timeout, a Go
	// duration.
	EnvTimeout = "ROSTER_TIMEOUT"
	// EnvCACert holds the file of the CA bundle (PEM) that verifies the
	// registry's certificate.
	EnvCACert = "ROSTER_CACERT"
	// EnvCert holds the file of the client certificate (PEM) for TLS.
	EnvCert = "ROSTER_CERT"
	// EnvKey holds the file of the client certificate's private key (PEM).
	EnvKey = "ROSTER_KEY"
	// EnvUsername holds the user name.
	EnvUsername = "ROSTER_USERNAME"
	// EnvPassword holds the password, taken as it is (spaces kept).
	EnvPassword = "ROSTER_PASSWORD"
)

// The environment variables of one backend.
const (
	// EnvPrefix holds the etcd backend's key prefix.
	EnvPrefix = "ROSTER_PREFIX"
	// EnvBucket holds the NATS backend's key-value bucket.
	EnvBucket = "ROSTER_BUCKET"
	// EnvToken holds the NATS backend's authentication token.
	EnvToken = "ROSTER_TOKEN"
	// EnvCredentials holds the NATS backend's credentials file (a user JWT
	// and its NKey seed).
	EnvCredentials = "ROSTER_CREDENTIALS"
	// EnvNKeySeed holds the file of the NATS backend's NKey user seed.
	EnvNKeySeed = "ROSTER_NKEY_SEED"
)
