package etcd_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
)

// operatorHarness gives the subtest a prefix of its own on one etcd
// server; every handle is a Backend with its own client.
type operatorHarness struct {
	t      *testing.T
	srv    *etcdtest.Server
	prefix string
}

func (h *operatorHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	cfg := testConfig(h.t, h.srv.Endpoints())
	cfg.Prefix = h.prefix
	return etcd.New(cfg)
}

func (h *operatorHarness) Close() {}

func TestOperatorView(t *testing.T) {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	discoverytest.RunOperatorView(t, func(_ context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &operatorHarness{t: t, srv: srv, prefix: fmt.Sprintf("/operator/%d", n.Add(1))}, nil
	})
}
