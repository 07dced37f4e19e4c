package etcdtest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}
