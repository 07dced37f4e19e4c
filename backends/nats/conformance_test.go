package nats_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
)

// harness gives each subtest a bucket of its own on one shared server;
// every handle is a Backend with its own connection, as separate
// processes are.
type harness struct {
	t      *testing.T
	srv    *natstest.Server
	bucket string
}

func (h *harness) MakeBackend(context.Context) (discovery.Backend, error) {
	return nats.New(testConfig(h.t, h.srv.URL(), h.bucket))
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	srv := natstest.Start(t)
	var n atomic.Int64
	discoverytest.Run(t, func(ctx context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &harness{t: t, srv: srv, bucket: fmt.Sprintf("conformance-%d", n.Add(1))}, nil
	}, discoverytest.Capabilities{Status: true, Conflict: true, Values: true})
}
