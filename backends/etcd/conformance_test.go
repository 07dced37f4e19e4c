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

// harness gives each subtest a prefix of its own on one shared etcd server;
// every handle is a Backend with its own client, as separate processes are.
type harness struct {
	t      *testing.T
	srv    *etcdtest.Server
	prefix string
}

func (h *harness) MakeBackend(ctx context.Context) (discovery.Backend, error) {
	cfg := testConfig(h.t, h.srv.Endpoints())
	cfg.Prefix = h.prefix
	return etcd.New(cfg)
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	discoverytest.Run(t, func(ctx context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &harness{t: t, srv: srv, prefix: fmt.Sprintf("/conformance/%d", n.Add(1))}, nil
	}, discoverytest.Capabilities{Status: true, Conflict: true, Values: true})
}
