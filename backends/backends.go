// Package backends names roster's backends for whoever selects one by name:
// the fx module's Config.Backend and the roster command line, both through
// the ROSTER_BACKEND environment variable. It imports nothing, so that a
// program can read the choice without linking any backend (or fx).
//
// Each backend lives in a package below this one (backends/etcd,
// backends/memory, ...) and owns its own settings: its Config, and a
// ConfigFromEnv that reads its ROSTER_* variables through a lookup
// function.
package backends

// EnvBackend is the environment variable that selects a backend by name:
// Etcd or Memory.
const EnvBackend = "ROSTER_BACKEND"

// Names of the backends, as EnvBackend and the fx module's Config.Backend
// spell them.
const (
	// Etcd names the etcd backend (package backends/etcd).
	Etcd = "etcd"
	// Memory names the in-process memory backend (package backends/memory).
	Memory = "memory"
)
