package etcdfx_test

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(closeShared{m})
}

// closeShared runs the tests, then closes the shared etcd.
type closeShared struct{ m *testing.M }

func (c closeShared) Run() int {
	code := c.m.Run()
	if shared.srv != nil {
		_ = shared.srv.Close()
	}
	return code
}

// shared is one etcd for the tests that never stop it; each of them writes
// under a prefix of its own.
var shared struct {
	once sync.Once
	srv  *etcdtest.Server
	err  error
}

func sharedEtcd(t *testing.T) *etcdtest.Server {
	t.Helper()
	shared.once.Do(func() { shared.srv, shared.err = etcdtest.New() })
	if shared.err != nil {
		t.Fatalf("start etcd: %v", shared.err)
	}
	return shared.srv
}
