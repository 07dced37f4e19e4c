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

// operatorHarness gives the subtest a bucket of its own on one server;
// every handle is a Backend with its own connection.
type operatorHarness struct {
	t      *testing.T
	srv    *natstest.Server
	bucket string
}

func (h *operatorHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	return nats.New(testConfig(h.t, h.srv.URL(), h.bucket))
}

func (h *operatorHarness) Close() {}

func TestOperatorView(t *testing.T) {
	srv := natstest.Start(t)
	var n atomic.Int64
	discoverytest.RunOperatorView(t, func(_ context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &operatorHarness{t: t, srv: srv, bucket: fmt.Sprintf("operator-%d", n.Add(1))}, nil
	})
}
