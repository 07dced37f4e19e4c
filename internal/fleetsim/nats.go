package fleetsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/embedded"
	"github.com/roster-sd/roster/discovery"
)

// natsRegistry is the NATS part of the simulator: an embedded 3-node
// cluster with JetStream, the bucket replicated on all three, the fault
// proxies of a cut, and for each process a counting relay in front of
// each node (natsRelay), since the NATS client takes no dialer from the
// backend: the relay counts the process's connection attempts and its
// requests, read from the protocol.
type natsRegistry struct {
	cfg      nats.Config
	cluster  *embedded.Cluster
	proxies  []*embedded.Proxy
	upstream []string // what the relays dial: the proxies, or the nodes
}

// startNATS starts the embedded cluster, and the proxies of a cut.
func startNATS(o Options, progress func(string, ...any)) (_ *natsRegistry, err error) {
	cfg := o.NATS
	cfg.TTL = o.TTL
	cfg.Replicas = 3
	cfg.Bucket = cmp.Or(cfg.Bucket, nats.DefaultBucket)
	r := &natsRegistry{}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
		}
	}()
	progress("starting an embedded 3-node NATS cluster")
	// The nodes do not advertise each other to clients: a client that
	// learnt a node's own address would bypass the relays and proxies.
	opts := []embedded.Option{embedded.WithNoAdvertise()}
	if o.ServerLog != nil {
		opts = append(opts, embedded.WithLogOutput(o.ServerLog))
	}
	if r.cluster, err = embedded.NewCluster(3, opts...); err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	cfg.Endpoints = r.cluster.URLs()
	r.cfg = cfg
	for _, s := range r.cluster.Nodes() {
		r.upstream = append(r.upstream, s.Addr())
	}
	if o.Cut > 0 {
		r.upstream = nil
		for _, s := range r.cluster.Nodes() {
			p, err := embedded.NewProxy(s.Addr())
			if err != nil {
				return nil, fmt.Errorf("start proxy to %s: %w", s.Addr(), err)
			}
			r.proxies = append(r.proxies, p)
			r.upstream = append(r.upstream, p.Endpoint())
		}
	}
	return r, nil
}

func (r *natsRegistry) prefix() string { return r.cfg.Bucket }

// newProcess gives process i a relay in front of each node, its own node
// (i mod 3) first; the client fails over between them (and shuffles
// them, as it does by default).
func (r *natsRegistry) newProcess(i int, pt *procTraffic) (processBackend, func() error, error) {
	cfg := r.cfg
	cfg.Logger = hclog.NewNullLogger()
	cfg.Endpoints = nil
	var relays []*natsRelay
	release := func() error {
		var errs []error
		for _, rl := range relays {
			errs = append(errs, rl.Close())
		}
		return errors.Join(errs...)
	}
	n := len(r.upstream)
	for j := range n {
		rl, err := newNATSRelay(r.upstream[(i+j)%n], pt)
		if err != nil {
			return nil, nil, errors.Join(err, release())
		}
		relays = append(relays, rl)
		cfg.Endpoints = append(cfg.Endpoints, "nats://"+rl.Addr())
	}
	b, err := nats.New(cfg)
	if err != nil {
		return nil, nil, errors.Join(err, release())
	}
	return b, release, nil
}

func (r *natsRegistry) reader() (discovery.Resolver, func() error, error) {
	cfg := r.cfg
	cfg.Logger = hclog.NewNullLogger()
	b, err := nats.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

func (r *natsRegistry) countsEvents() bool                  { return false }
func (r *natsRegistry) registrationCounters() *serverCounts { return nil }
func (r *natsRegistry) serverCounters() map[string]float64  { return nil }

func (r *natsRegistry) cut() error {
	for _, p := range r.proxies {
		p.Blackhole()
		if err := p.DropConnections(); err != nil {
			return err
		}
	}
	return nil
}

func (r *natsRegistry) heal() {
	for _, p := range r.proxies {
		p.Unblackhole()
	}
}

// natsMember is a node of the embedded NATS cluster.
type natsMember struct{ s *embedded.Server }

func (m natsMember) stop() error    { m.s.Stop(); return nil }
func (m natsMember) restart() error { return m.s.Restart() }

func (r *natsRegistry) members() []member {
	var out []member
	for _, s := range r.cluster.Nodes() {
		out = append(out, natsMember{s})
	}
	return out
}

// stream is the JetStream stream of the bucket.
func (r *natsRegistry) stream() string { return "KV_" + r.cfg.Bucket }

// leader is the node that leads the bucket's stream, while JetStream has
// a meta leader: the registry is usable then (the meta leader answers
// the API, the stream leader the bucket's reads and writes).
func (r *natsRegistry) leader() int {
	if r.cluster.Leader() < 0 {
		return -1
	}
	return r.cluster.StreamLeader(r.stream())
}

func (r *natsRegistry) waitHealthy(ctx context.Context) error {
	if err := r.cluster.WaitPeers(ctx, len(r.cluster.Nodes())); err != nil {
		return err
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for r.leader() < 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader of stream %s: %w", r.stream(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (r *natsRegistry) close() error {
	var errs []error
	for _, p := range r.proxies {
		errs = append(errs, p.Close())
	}
	if r.cluster != nil {
		errs = append(errs, r.cluster.Close())
	}
	return errors.Join(errs...)
}
