package etcdtest

import "go.uber.org/goleak"

// LeakOptions returns the goleak options that a package whose tests run
// etcd through etcdtest should pass to goleak.VerifyTestMain or
// goleak.VerifyNone:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
//	}
//
// The list is empty today: once Close has returned, every goroutine that a
// Server, Cluster or Proxy started has ended, and so have those of the
// clients from Client once their tests end. It exists so that, should a
// future etcd release start a goroutine that outlives Close, the exception
// is made once, here, rather than in every package.
func LeakOptions() []goleak.Option {
	return nil
}
