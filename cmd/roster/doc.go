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
//	roster bench       simulate a fleet of roster processes against etcd or NATS and report its cost
//	roster ui          serve a live, read-only web view of the registry (roster dev --ui: beside the development registry)
//
// Every command has --help. --backend (ROSTER_BACKEND) selects the
// registry: etcd (the default) or nats. The connection is set by
// persistent flags (--endpoints, --prefix or --bucket, --cacert, --cert,
// --key, --user, --password, --creds, --nkey-seed, --timeout; --ttl for
// register), each of which also reads a ROSTER_* environment variable (a
// flag given on the command line wins). The variables, with their flags
// and defaults, are listed once, in the repository's docs/configuration.md
// (https://github.com/roster-sd/roster/blob/main/docs/configuration.md).
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
