package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/roster-sd/roster/internal/freeport"
)

// Cluster is an n-node nats-server cluster with JetStream (usually three
// nodes, so that it survives the loss of one), on loopback, each node
// storing into a directory of its own under one temporary directory. Its
// methods are safe for concurrent use.
type Cluster struct {
	nodes []*Server
	dir   string

	closeOnce sync.Once
	closeErr  error
}

// NewCluster starts n nodes (at least 1) and returns once every node
// accepts connections, JetStream has elected a meta leader and the leader
// counts every node as a peer that can hold streams (before that,
// creating a replicated stream fails with "no suitable peers for
// placement"). opts apply
// to every node (WithStoreDir is not allowed). The caller must Close it.
func NewCluster(n int, opts ...Option) (_ *Cluster, err error) {
	if n < 1 {
		return nil, fmt.Errorf("embedded: cluster of %d nodes; want at least 1", n)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.storeDir != "" || o.tls || o.port != 0 || o.operator {
		return nil, errors.New("embedded: WithStoreDir, WithTLS, WithPort and WithOperator do not apply to a cluster")
	}
	dir, err := os.MkdirTemp("", "roster-nats-cluster-")
	if err != nil {
		return nil, fmt.Errorf("embedded: store directory: %w", err)
	}
	c := &Cluster{dir: dir}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	ports, err := freeport.Reserve(n)
	if err != nil {
		return nil, err
	}
	name := "roster-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range n {
		m := &member{name: fmt.Sprintf("n%d", i+1), cluster: name, clusterPort: ports[i]}
		for j, p := range ports {
			if j != i {
				m.routes = append(m.routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p))})
			}
		}
		s := &Server{o: o, storeDir: filepath.Join(dir, m.name), member: m, port: server.RANDOM_PORT}
		c.nodes = append(c.nodes, s)
	}
	// Start every node before waiting for any: JetStream's meta group
	// needs a quorum.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range c.nodes {
		wg.Go(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			errs[i] = s.start()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := c.WaitPeers(ctx, n); err != nil {
		return nil, err
	}
	return c, nil
}

// WaitPeers waits until JetStream has a meta leader that counts n nodes
// as current peers, able to hold streams.
func (c *Cluster) WaitPeers(ctx context.Context, n int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if i := c.Leader(); i >= 0 {
			if srv := c.nodes[i].NATS(); srv != nil && len(srv.JetStreamClusterPeers()) >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("embedded: JetStream does not count %d current peers: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// Nodes returns the cluster's servers, in order; Stop and Restart them
// one by one.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// URLs returns the client URLs of every node, for a client to fail over.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		out[i] = s.URL()
	}
	return out
}

// Leader returns the index of the running node that is JetStream's meta
// leader, or -1 if there is none at the moment.
func (c *Cluster) Leader() int {
	for i, s := range c.nodes {
		if srv := s.NATS(); srv != nil && srv.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// StreamLeader returns the index of the running node that leads stream
// (in the default account), such as "KV_roster" for a key-value bucket
// "roster", or -1 if there is none at the moment.
func (c *Cluster) StreamLeader(stream string) int {
	for i, s := range c.nodes {
		if srv := s.NATS(); srv != nil && srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitLeader waits until JetStream has a meta leader and returns its
// index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if i := c.Leader(); i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("embedded: no JetStream meta leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops every node and removes the cluster's directory. It is safe
// to call more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var wg sync.WaitGroup
		errs := make([]error, len(c.nodes)+1)
		for i, s := range c.nodes {
			wg.Go(func() { errs[i] = s.Close() })
		}
		wg.Wait()
		if err := os.RemoveAll(c.dir); err != nil {
			errs[len(c.nodes)] = fmt.Errorf("embedded: remove store directory: %w", err)
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
