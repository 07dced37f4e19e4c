// Package etcdtest runs a real etcd inside the current process, for tests,
// runnable examples and local development.
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
//     their keys again.
//   - [Cluster] is a multi-member etcd (usually three members) whose leader
//     can be found and stopped.
//   - [Proxy] sits between a client and a server and can blackhole traffic,
//     add latency, or cut every open connection.
//
// The constructors [New], [NewCluster] and [NewProxy] return an error and
// need no *testing.T, so they also serve commands such as "roster dev".
// [Start], [StartCluster] and [StartProxy] are the test shorthands: they
// fail the test on error and register cleanup with t.Cleanup.
//
// Everything is tuned for tests: etcd's own logs are silenced (see
// [WithLogOutput] and [WithLogger]), fsync is disabled, heartbeats and
// election timeouts are short so a new leader is elected within about a
// second, and auto-compaction is off. Do not use it to hold data you care
// about.
//
// Once Close has returned, every goroutine that a Server, Cluster or Proxy
// started has ended, and so have those of the clients from Client once
// their tests end, so packages whose tests start an etcd can check for
// leaked goroutines with a plain goleak.VerifyTestMain(m).
package etcdtest
