package nats_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
	"github.com/roster-sd/roster/internal/testing/faultlink"
	"github.com/roster-sd/roster/retry"
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

// faultHarness is discoverytest's fault harness on NATS: a server of its
// own, which the backends of MakeBackend reach through a proxy (the link
// Cut cuts) and observers directly.
type faultHarness struct {
	t              *testing.T
	srv            *natstest.Server
	faultlink.Link // Cut and Heal: the proxy MakeBackend dials
	opts           discoverytest.FaultOptions
}

const faultBucket = "faults"

func newFaultHarness(_ context.Context, t *testing.T, opts discoverytest.FaultOptions) (discoverytest.FaultHarness, error) {
	srv := natstest.Start(t)
	return &faultHarness{t: t, srv: srv, Link: faultlink.Link{Proxy: natstest.StartProxy(t, srv.Addr())}, opts: opts}, nil
}

func (h *faultHarness) config(url string) nats.Config {
	cfg := testConfig(h.t, url, faultBucket)
	cfg.TTL = h.opts.TTL
	cfg.Retry = retry.Policy{Base: 20 * time.Millisecond, Max: h.opts.MaxRetryDelay, Jitter: 0.2}
	// A reconnection into a partition hangs for DialTimeout (the NATS
	// client holds its lock meanwhile, so a request waits that long too).
	cfg.DialTimeout = time.Second
	return cfg
}

func (h *faultHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	return nats.New(h.config("nats://" + h.Proxy.Endpoint()))
}

func (h *faultHarness) MakeObserver(context.Context) (discovery.Backend, error) {
	return nats.New(h.config(h.srv.URL()))
}

func (h *faultHarness) Stop(context.Context) error  { h.srv.Stop(); return nil }
func (h *faultHarness) Start(context.Context) error { return h.srv.Restart() }

// Wipe implements discoverytest.Wiper: nats-server restarted without
// its data, its bucket and sequences gone.
func (h *faultHarness) Wipe(context.Context) error { return h.srv.Wipe() }

// Remove deletes the instance's key. The suite's service names and IDs
// hold no '.' or '=', so the key is <service>.<id> unescaped.
func (h *faultHarness) Remove(ctx context.Context, k discovery.Key) error {
	kv := rawKV(h.t, h.srv.URL(), faultBucket)
	key := k.Service + "." + k.ID
	if _, err := kv.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete %s: the bucket does not hold it", key)
		}
		return err
	}
	return kv.Delete(ctx, key)
}

// Close does nothing: the server and the proxy close with the subtest.
func (h *faultHarness) Close() {}

// harnesses starts a nats-server for the test and returns a maker of
// harnesses on it, each with a bucket of its own, <name>-<n>.
func harnesses(t *testing.T, name string) discoverytest.HarnessMaker {
	srv := natstest.Start(t)
	var n atomic.Int64
	return func(_ context.Context, t *testing.T) (discoverytest.Harness, error) {
		return &harness{t: t, srv: srv, bucket: fmt.Sprintf("%s-%d", name, n.Add(1))}, nil
	}
}

func TestConformance(t *testing.T) {
	discoverytest.Run(t, harnesses(t, "conformance"),
		discoverytest.Capabilities{Status: true, Conflict: true, Values: true, Faults: newFaultHarness})
}
