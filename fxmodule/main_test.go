package fxmodule_test

import (
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/etcdfxtest"
)

// shared is one etcd for the tests that never stop it; each of them
// writes under a prefix of its own.
var shared etcdfxtest.Shared

func TestMain(m *testing.M) { etcdfxtest.Main(m, &shared) }

func sharedEtcd(t *testing.T) *etcdtest.Server { return shared.Etcd(t) }
