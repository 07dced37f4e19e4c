// Package embedded runs a real etcd inside the current process, for
// commands such as "roster dev" and "roster bench", runnable examples, and
// tests (through package etcdtest).
//
// Its one job is to give callers a genuine etcd server (not a fake) that
// starts in about a second on loopback, on free ports, with a fresh data
// directory, and that can be stopped, restarted, partitioned and slowed
// down on demand so that fault-handling code can be exercised for real:
//
//   - [Server] is a single-member etcd, optionally serving TLS with client
//     certificate authentication ([WithTLS]) and username/password
//     authentication ([WithAuth]). [Server.Stop] and [Server.Restart] keep
//     its ports and data, so clients reconnect to the same endpoint and find
//     their keys again. Two faults make it come back different:
//     [Server.Wipe] rebuilds it from an empty data directory with the same
//     member and cluster IDs, and [Server.RestoreBackup] puts it back to a
//     [Backup] taken earlier by [Server.Backup].
//   - [Cluster] is a multi-member etcd (usually three members) whose leader
//     can be found and stopped.
//   - [Proxy] sits between a client and a server and can blackhole traffic,
//     add latency, or cut every open connection.
//
// The constructors [New], [NewCluster] and [NewProxy] return an error, and
// each type has a Close that releases everything it started. The package
// does not import testing, so a command that links it does not link the
// test framework; package etcdtest adds the test shorthands (Start,
// StartCluster, StartProxy) on top of it.
//
// Everything is tuned for tests and development: etcd's own logs are
// silenced (see [WithLogOutput] and [WithLogger]), fsync is disabled,
// heartbeats and election timeouts are short so a new leader is elected
// within about a second, and auto-compaction is off. Do not use it to hold
// data you care about.
package embedded
