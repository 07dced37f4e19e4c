// Package embedded runs a real nats-server with JetStream inside the
// current process, for "roster dev --backend nats", runnable examples, and
// tests (through package natstest).
//
// Its one job is to give callers a genuine NATS server (not a fake) that
// starts in milliseconds on loopback, on a free port, with JetStream
// storing into a fresh directory, and that can be stopped, restarted and
// cut off on demand so that fault-handling code can be exercised for real:
//
//   - [Server] is a single server, optionally serving TLS only ([WithTLS],
//     trusted through [Server.ClientTLSConfig]) and requiring a user and
//     password ([WithUser]), a token ([WithToken]), an NKey ([WithNKeyUser]),
//     or a user of a trusted operator, with a credentials file
//     ([WithOperator], [Server.CredentialsFile]). [Server.Stop] and
//     [Server.Restart] keep its port and its data, so clients reconnect to
//     the same URL and find their keys again. [Server.Wipe] and
//     [Server.RestoreBackup] keep the port but not the data: the
//     server comes back emptied, or rolled back to a [Backup] taken
//     earlier ([Server.Backup]), the faults of a registry that comes back
//     different.
//   - [Cluster] is an n-node cluster (usually three) with JetStream
//     replicated across the nodes; [Cluster.Leader] and
//     [Cluster.StreamLeader] name the node to stop to exercise a leader
//     election.
//   - [Proxy] sits between a client and a server and can blackhole,
//     reject, slow down or cut its connections. It is the fault-injecting
//     proxy that etcd's embedded server uses (package
//     github.com/roster-sd/roster/internal/faultproxy).
//
// The constructors [New], [NewCluster] and [NewProxy] return an error
// ("embedded: ..."), and each type has a Close that releases everything
// it started; once Close has returned, every goroutine the server or proxy
// started has ended. The package does not import testing, so a command
// that links it does not link the test framework; package natstest adds
// the test shorthands (Start, StartCluster, StartProxy, Restart,
// Wipe, TakeBackup, RestoreBackup) on top of
// it.
//
// Everything is tuned for tests and development: the server's own logs
// are off (see [WithLogOutput]) and, unless [WithStoreDir] names one, the
// store lives in a temporary directory removed by Close. Do not use it to
// hold data you care about.
package embedded
