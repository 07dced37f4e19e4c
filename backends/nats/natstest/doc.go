// Package natstest runs a real nats-server with JetStream inside the
// current process, for tests of code that uses NATS: roster's own NATS
// backend, and applications that want to test against a genuine server
// rather than a fake.
//
// [New] starts a single server on a free loopback port with JetStream
// storing into a fresh temporary directory, optionally with TLS
// ([WithTLS], trusted through [Server.ClientTLSConfig]) and user/password
// ([WithUser]) or token ([WithToken]) authentication; [Server.Stop] and
// [Server.Restart] keep its port and its data, so clients reconnect to the
// same URL and find their keys again. [NewProxy] puts the fault-injecting
// TCP proxy that roster's etcd tests use (package
// github.com/roster-sd/roster/internal/faultproxy) in front of a server, to
// blackhole, reject, slow down or cut its connections.
//
// [Start], [StartCluster] and [StartProxy] are the shorthands for tests: they fail the test
// when the server cannot start and close it when the test ends. Only they
// use package testing. Once Close has returned, every goroutine the server
// or proxy started has ended, so tests may check for leaks with goleak.
//
// [NewCluster] starts an n-node cluster (usually three) with JetStream
// replicated across the nodes; [Cluster.Leader] and [Cluster.StreamLeader]
// name the node to stop to exercise a leader election.
//
// Everything is tuned for tests: the server's own logs are off and the
// store lives in a temporary directory removed by Close. Do not use it to
// hold data you care about.
package natstest
