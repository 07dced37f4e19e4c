// Package etcdtest runs a real etcd inside the current process for tests.
//
// The server, cluster and proxy are package embedded's (etcdtest.Server is
// embedded.Server, and so on), which also serves commands such as
// "roster dev" without linking package testing. etcdtest adds the test
// shorthands: [Start], [StartCluster] and [StartProxy] fail the test on
// error and register cleanup with t.Cleanup, and Server.Client and
// Cluster.Client return a client closed at the end of the test.
//
// Once Close has returned, every goroutine that a Server, Cluster or Proxy
// started has ended, and so have those of the clients from Client once
// their tests end, so packages whose tests start an etcd can check for
// leaked goroutines with a plain goleak.VerifyTestMain(m).
package etcdtest
