package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	"github.com/roster-sd/roster/discovery"
)

// rangeMethod is etcd's full read.
const rangeMethod = "/etcdserverpb.KV/Range"

// etcdServerCounters are etcd's counters the fault report gives, the
// evidence of what the members did during a fault and its recovery.
var etcdServerCounters = []string{
	"grpc_server_msg_received_total",
	"grpc_server_handled_total",
	"etcd_server_leader_changes_seen_total",
	"etcd_server_proposals_failed_total",
	"etcd_server_slow_apply_total",
	"etcd_server_slow_read_indexes_total",
	"etcd_debugging_server_lease_expired_total",
	"etcd_server_client_requests_total",
}

// etcdRegistry is the etcd part of the simulator: an embedded 3-member
// cluster or the user's, a plain client to check and clean up, and the
// fault proxies of a cut.
type etcdRegistry struct {
	cfg      etcd.Config // the fleet's, endpoints straight to etcd
	fleetEPs []string    // what the fleet dials: the proxies, or cfg.Endpoints
	// allEndpoints: each process is given every endpoint (so it fails
	// over when a member stops), rather than one.
	allEndpoints bool
	cluster      *embedded.Cluster // nil against the user's cluster
	proxies      []*embedded.Proxy
	admin        *clientv3.Client
	progress     func(string, ...any)
}

// startEtcd starts the embedded cluster unless o.Etcd has endpoints,
// connects the plain client, and puts a proxy in front of each endpoint
// if o asks for a cut.
func startEtcd(o Options, progress func(string, ...any)) (_ *etcdRegistry, err error) {
	cfg := o.Etcd
	cfg.TTL = o.TTL
	r := &etcdRegistry{progress: progress, allEndpoints: o.RestartMembers > 0 || o.RestartLeader > 0}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
		}
	}()
	if len(cfg.Endpoints) == 0 {
		progress("starting an embedded 3-member etcd cluster")
		opts := []embedded.Option{embedded.WithRaftTiming(o.ElectionTimeout/10, o.ElectionTimeout)}
		if o.ServerLog != nil {
			opts = append(opts, embedded.WithLogOutput(o.ServerLog))
		}
		if r.cluster, err = embedded.NewCluster(3, opts...); err != nil {
			return nil, fmt.Errorf("start embedded etcd: %w", err)
		}
		cfg.Endpoints = r.cluster.Endpoints()
	}
	r.cfg = cfg
	// A plain client, straight to etcd, to check and clean up.
	if r.admin, err = clientv3.New(etcd.ClientConfig(cfg)); err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}
	r.fleetEPs = cfg.Endpoints
	if o.Cut > 0 {
		r.fleetEPs = nil
		for _, ep := range cfg.Endpoints {
			p, err := embedded.NewProxy(ep)
			if err != nil {
				return nil, fmt.Errorf("start proxy to %s: %w", ep, err)
			}
			r.proxies = append(r.proxies, p)
			r.fleetEPs = append(r.fleetEPs, p.Endpoint())
		}
	}
	return r, nil
}

func (r *etcdRegistry) prefix() string { return r.cfg.Prefix }

// newProcess connects process i to endpoint i mod the endpoints only, as
// a fleet spread over the members would; a client given every endpoint
// keeps a connection to each (gRPC round robin), which would triple the
// file descriptors the simulation needs. A restart of single members
// gives each process every endpoint, starting with its own, so that it
// can fail over.
func (r *etcdRegistry) newProcess(i int, pt *procTraffic) (processBackend, func() error, error) {
	cfg := r.cfg
	cfg.Logger = hclog.NewNullLogger()
	n := len(r.fleetEPs)
	cfg.Endpoints = []string{r.fleetEPs[i%n]}
	if r.allEndpoints {
		cfg.Endpoints = append(cfg.Endpoints[:0:0], r.fleetEPs[i%n:]...)
		cfg.Endpoints = append(cfg.Endpoints, r.fleetEPs[:i%n]...)
	}
	cc := etcd.ClientConfig(cfg)
	cc.DialOptions = append(cc.DialOptions, grpcCounting(pt)...)
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	b, err := etcd.NewWithClient(cli, cfg)
	if err != nil {
		_ = cli.Close()
		return nil, nil, err
	}
	return b, cli.Close, nil
}

func (r *etcdRegistry) reader() (discovery.Resolver, func() error, error) {
	b, err := etcd.NewWithClient(r.admin, r.cfg)
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

func (r *etcdRegistry) countsEvents() bool { return true }

func (r *etcdRegistry) registrationCounters() *serverCounts {
	if r.cluster == nil {
		return nil
	}
	return &serverCounts{
		events:   serverCounter("etcd_debugging_mvcc_events_total"),
		requests: serverCounter("grpc_server_msg_received_total"),
	}
}

func (r *etcdRegistry) cut() error {
	for _, p := range r.proxies {
		p.Blackhole()
		if err := p.DropConnections(); err != nil {
			return err
		}
	}
	return nil
}

func (r *etcdRegistry) heal() {
	for _, p := range r.proxies {
		p.Unblackhole()
	}
}

// etcdMember is a member of the embedded etcd cluster.
type etcdMember struct{ s *embedded.Server }

func (m etcdMember) stop() error    { return m.s.Stop() }
func (m etcdMember) restart() error { return m.s.Restart() }

func (r *etcdRegistry) members() []member {
	if r.cluster == nil {
		return nil
	}
	var out []member
	for _, s := range r.cluster.Members() {
		out = append(out, etcdMember{s})
	}
	return out
}

// leader is the member a quorum of the running members names leader.
func (r *etcdRegistry) leader() int {
	if r.cluster == nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	i, err := r.cluster.WaitLeader(ctx)
	if err != nil {
		return -1
	}
	return i
}

func (r *etcdRegistry) waitHealthy(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		running := 0
		for _, m := range r.cluster.Members() {
			if m.Running() {
				running++
			}
		}
		if running == len(r.cluster.Members()) && r.leader() >= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d members running, leader %d: %w", running, len(r.cluster.Members()), r.leader(), ctx.Err())
		case <-t.C:
		}
	}
}

func (r *etcdRegistry) serverCounters() map[string]float64 {
	if r.cluster == nil {
		return nil
	}
	out := make(map[string]float64)
	for _, name := range etcdServerCounters {
		out[name] = serverCounter(name)
	}
	return out
}

// close removes the run's prefix and stops what startEtcd started.
func (r *etcdRegistry) close() error {
	var errs []error
	if r.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := r.admin.Delete(ctx, r.cfg.Prefix+"/", clientv3.WithPrefix()); err != nil {
			errs = append(errs, fmt.Errorf("remove prefix %s: %w", r.cfg.Prefix, err))
		} else {
			r.progress("removed prefix %s", r.cfg.Prefix)
		}
		cancel()
		errs = append(errs, r.admin.Close())
	}
	for _, p := range r.proxies {
		errs = append(errs, p.Close())
	}
	if r.cluster != nil {
		errs = append(errs, r.cluster.Close())
	}
	return errors.Join(errs...)
}

// grpcCounting returns the gRPC dial options that count a process's
// connection attempts and requests into pt.
func grpcCounting(pt *procTraffic) []grpc.DialOption {
	var d net.Dialer
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			pt.dial()
			for _, scheme := range []string{"http://", "https://"} {
				addr = strings.TrimPrefix(addr, scheme)
			}
			return d.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithStatsHandler(trafficStats{pt}),
	}
}

// trafficStats is the gRPC stats handler that feeds a process's traffic:
// gRPC calls it as each message is sent or received.
type trafficStats struct{ p *procTraffic }

type methodKey struct{}

func (h trafficStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (h trafficStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.OutPayload:
		method, _ := ctx.Value(methodKey{}).(string)
		read := method == rangeMethod
		if wr, ok := s.Payload.(*etcdserverpb.WatchRequest); ok {
			// Tell watch creations from cancellations and progress
			// requests.
			switch wr.RequestUnion.(type) {
			case *etcdserverpb.WatchRequest_CancelRequest:
				method += " cancel"
			case *etcdserverpb.WatchRequest_ProgressRequest:
				method += " progress"
			}
		}
		h.p.count(shortMethod(method), read)
	case *stats.InPayload:
		if wr, ok := s.Payload.(*etcdserverpb.WatchResponse); ok {
			h.p.event(len(wr.Events))
		}
	}
}

func (trafficStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (trafficStats) HandleConn(context.Context, stats.ConnStats) {}

// serverCounter sums one of etcd's counters over the embedded members
// (they register their metrics on Prometheus' default registry).
func serverCounter(name string) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
