// Command roster is the command line of the roster service-discovery
// framework: it lets operators and developers see and poke the registry
// without writing Go, the way etcdctl and "consul catalog" do, and gives a
// developer a registry on a laptop with nothing installed, the way
// "consul agent -dev" does.
//
// Install it with
//
//	go install github.com/roster-sd/roster/cmd/roster@latest
//
// or, from a checkout, go install ./cmd/roster. Its commands:
//
//	roster dev         run a single-member etcd (or NATS) in-process for development
//	roster ls          list services, or the instances of one service
//	roster watch       follow the instances of a service as they change
//	roster register    register an instance and keep it registered until Ctrl+C
//	roster deregister  delete one instance's key (an operator's fix)
//	roster bench       simulate a fleet of roster processes against etcd and report its cost
//	roster ui          serve a live, read-only web view of the registry (roster dev --ui: beside the development registry)
//
// Every command has --help. --backend (ROSTER_BACKEND) selects the
// registry: etcd (the default) or nats. The connection is set by
// persistent flags, each of which also reads an environment variable (a
// flag given on the command line wins):
//
//	--backend    ROSTER_BACKEND      etcd or nats (etcd)
//	--endpoints  ROSTER_ENDPOINTS    endpoints, comma-separated: etcd's host:port or URLs (127.0.0.1:2379),
//	                                 NATS's nats:// or tls:// URLs (nats://127.0.0.1:4222)
//	--prefix     ROSTER_PREFIX       etcd: key prefix of the registry (/roster/services)
//	--bucket     ROSTER_BUCKET       NATS: key-value bucket of the registry (roster)
//	--cacert     ROSTER_CACERT       CA certificate file (PEM) to verify the registry with
//	--cert       ROSTER_CERT         client certificate file (PEM)
//	--key        ROSTER_KEY          client certificate's private key file (PEM)
//	--user       ROSTER_USERNAME     user name
//	--password   ROSTER_PASSWORD     password (never printed; the flag is visible to other local users in ps, use the variable)
//	--creds      ROSTER_CREDENTIALS  NATS: credentials file (user JWT and NKey seed)
//	--nkey-seed  ROSTER_NKEY_SEED    NATS: NKey user seed file
//	-            ROSTER_TOKEN        NATS: authentication token (no flag: it would show in ps)
//	--timeout    ROSTER_TIMEOUT      dial and request timeout (5s)
//	--ttl        ROSTER_TTL          register's TTL (15s)
//
// The variables are read by the selected backend's ConfigFromEnv
// (etcd.ConfigFromEnv, nats.ConfigFromEnv), as the fx module reads them.
//
// -v (--verbose) logs the backend's activity on stderr.
//
// Errors are one line on stderr prefixed "roster: ", with exit status 1
// for failures and 2 for invalid input; a command line that cannot be
// parsed also prints the command's usage.
package main
