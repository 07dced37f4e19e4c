// Package etcdtest runs a real etcd inside the current process for tests.
//
// The server, cluster and proxy are package embedded's (etcdtest.Server is
// embedded.Server, and so on), which also serves commands such as
// "roster dev" without linking package testing. etcdtest adds the test
// shorthands: [Start], [StartCluster] and [StartProxy] fail the test on
// error and register cleanup with t.Cleanup, and Server.Client and
// Cluster.Client return a client closed at the end of the test.
//
// Packages whose tests start an etcd and check for leaked goroutines should
// pass [LeakOptions] to goleak:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
//	}
package etcdtest
