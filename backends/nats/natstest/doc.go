// Package natstest runs a real nats-server with JetStream inside the
// current process for tests: roster's own NATS backend's, and those of
// applications that want a genuine server rather than a fake.
//
// The server, cluster and proxy are package embedded's (natstest.Server is
// embedded.Server, and so on), which also serves commands such as
// "roster dev --backend nats" without linking package testing. natstest
// adds the test shorthands: [Start], [StartCluster] and [StartProxy] fail
// the test on error and register cleanup with t.Cleanup, and [Restart]
// fails it when a server cannot start again.
//
// Once Close has returned, every goroutine that a Server, Cluster or Proxy
// started has ended, so packages whose tests start a nats-server can check
// for leaked goroutines with a plain goleak.VerifyTestMain(m).
package natstest
