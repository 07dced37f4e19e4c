package etcd_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
	"github.com/roster-sd/roster/internal/testing/faultlink"
	"github.com/roster-sd/roster/retry"
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

// faultHarness is discoverytest's fault harness on etcd: a server of its
// own, which the backends of MakeBackend reach through a proxy (the link
// Cut cuts) and observers directly.
type faultHarness struct {
	t              *testing.T
	srv            *etcdtest.Server
	faultlink.Link // Cut and Heal: the proxy MakeBackend dials
	opts           discoverytest.FaultOptions
}

const faultPrefix = "/faults"

func newFaultHarness(_ context.Context, t *testing.T, opts discoverytest.FaultOptions) (discoverytest.FaultHarness, error) {
	srv := etcdtest.Start(t)
	return &faultHarness{t: t, srv: srv, Link: faultlink.Link{Proxy: etcdtest.StartProxy(t, srv.Endpoints()[0])}, opts: opts}, nil
}

func (h *faultHarness) config(endpoint string) etcd.Config {
	cfg := testConfig(h.t, []string{endpoint})
	cfg.Prefix = faultPrefix
	cfg.TTL = h.opts.TTL
	cfg.Retry = retry.Policy{Base: 50 * time.Millisecond, Max: h.opts.MaxRetryDelay, Jitter: 0.2}
	cfg.RequestTimeout = 2 * h.opts.MaxRetryDelay
	return cfg
}

func (h *faultHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	return etcd.New(h.config(h.Proxy.Endpoint()))
}

func (h *faultHarness) MakeObserver(context.Context) (discovery.Backend, error) {
	return etcd.New(h.config(h.srv.Endpoints()[0]))
}

func (h *faultHarness) Stop(context.Context) error  { return h.srv.Stop() }
func (h *faultHarness) Start(context.Context) error { return h.srv.Restart() }

// Wipe implements discoverytest.Wiper: etcd wiped with the same cluster
// ID while the backends are cut off, so that they reconnect to the new
// history only.
func (h *faultHarness) Wipe(context.Context) error {
	h.Proxy.Reject()
	defer h.Proxy.Accept()
	return h.srv.Wipe()
}

func (h *faultHarness) Remove(ctx context.Context, k discovery.Key) error {
	key := faultPrefix + "/" + k.Service + "/" + k.ID
	resp, err := etcdtest.Client(h.t, h.srv).Delete(ctx, key)
	if err == nil && resp.Deleted != 1 {
		err = fmt.Errorf("delete %s: etcd did not hold it", key)
	}
	return err
}

// Close does nothing: the server and the proxy close with the subtest.
func (h *faultHarness) Close() {}

// harnesses starts an etcd server for the test and returns a maker of
// harnesses on it, each with a prefix of its own under /<name>.
func harnesses(t *testing.T, name string) discoverytest.HarnessMaker {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	return func(_ context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &harness{t: t, srv: srv, prefix: fmt.Sprintf("/%s/%d", name, n.Add(1))}, nil
	}
}

func TestConformance(t *testing.T) {
	discoverytest.Run(t, harnesses(t, "conformance"),
		discoverytest.Capabilities{Status: true, Conflict: true, Values: true, Faults: newFaultHarness})
}
