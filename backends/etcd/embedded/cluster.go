package embedded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/internal/freeport"
)

// Cluster is a multi-member etcd running in this process, every member on
// its own loopback ports and data directory. Its methods are safe for
// concurrent use.
type Cluster struct {
	members   []*Server
	peerFwds  []*Proxy // one relay in front of each member's peer port
	ownedDirs []string // the TLS directory shared by the members, if any

	closeOnce sync.Once
	closeErr  error
}

// NewCluster starts an etcd cluster of n members (3 is the usual choice)
// and returns once every member is ready, or with an error after
// DefaultReadyTimeout. The options apply to every member; see WithDataDir
// and WithClientPort for how they are shared out. The caller must Close the
// cluster.
func NewCluster(n int, opts ...Option) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("embedded: cluster of %d members", n)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.clientPort != 0 && o.clientPort+n-1 > 65535 {
		return nil, fmt.Errorf("embedded: WithClientPort: ports %d..%d out of range", o.clientPort, o.clientPort+n-1)
	}
	if o.dataDir != "" {
		// The members' data records their peer addresses, which change
		// from one NewCluster to the next.
		if _, err := os.Stat(filepath.Join(o.dataDir, "m0", "member")); err == nil {
			return nil, fmt.Errorf("embedded: WithDataDir: %s holds a previous cluster, which cannot be started again", o.dataDir)
		}
	}
	return withFreshPorts(o, func() (*Cluster, error) { return newCluster(n, o) })
}

// newCluster is NewCluster with its arguments checked.
func newCluster(n int, o options) (_ *Cluster, err error) {
	ports, err := freeport.Reserve(2 * n)
	if err != nil {
		return nil, err
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}

	c := &Cluster{}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	var p *pki
	if o.tls {
		if p, err = newPKI(); err != nil {
			return nil, err
		}
		c.ownedDirs = append(c.ownedDirs, p.dir)
	}

	initial := make([]string, 0, n)
	for i := range n {
		name := "m" + strconv.Itoa(i)
		clientPort, peerPort := ports[2*i], ports[2*i+1]
		if o.clientPort != 0 {
			clientPort = o.clientPort + i
		}
		dataDir, owned, err := prepareDataDir(o.dataDir, name, nil)
		if err != nil {
			return nil, err
		}
		m := newServer(name, o, p, clientPort, peerPort, dataDir)
		m.ownedDirs = owned
		m.clusterToken = token
		c.members = append(c.members, m)
		// Peers reach the member through a relay that stopping the member
		// cuts: etcd on its own waits a second for open peer connections
		// when it stops, then leaves some of them (and their goroutines)
		// open for up to 5 s, its peer read timeout.
		fwd, err := NewProxy(m.peerURL.Host)
		if err != nil {
			return nil, err
		}
		c.peerFwds = append(c.peerFwds, fwd)
		m.peerGate = fwd
		m.advPeerURL.Host = fwd.Endpoint()
		initial = append(initial, name+"="+m.advPeerURL.String())
	}
	for _, m := range c.members {
		m.initialCluster = strings.Join(initial, ",")
	}

	// Start the members together: each one waits for a quorum of the
	// others before it reports ready.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Go(func() {
			m.opMu.Lock()
			defer m.opMu.Unlock()
			errs[i] = m.start()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.user != "" {
		if err := setupAuth(c.members[0].baseClientConfig(c.Endpoints()), o.user, o.password); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Members returns the members, in a stable order: the index of a member is
// the one Leader and StopLeader report. Each member can be stopped and
// restarted on its own; it must not be closed on its own.
func (c *Cluster) Members() []*Server {
	return append([]*Server(nil), c.members...)
}

// Endpoints returns the client addresses of all members, running or not, in
// member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, 0, len(c.members))
	for _, m := range c.members {
		eps = append(eps, m.clientURL.Host)
	}
	return eps
}

// ClientConfig returns a client configuration for the whole cluster: as
// Server.ClientConfig, with the endpoints of all members.
func (c *Cluster) ClientConfig() clientv3.Config {
	cfg := c.members[0].ClientConfig()
	cfg.Endpoints = c.Endpoints()
	return cfg
}

// Leader returns the index in Members of the current leader, waiting up to
// DefaultLeaderTimeout for one, as WaitLeader does.
func (c *Cluster) Leader() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultLeaderTimeout)
	defer cancel()
	return c.WaitLeader(ctx)
}

// WaitLeader waits until a running member leads with the backing of a
// quorum, that is until more than half of all the members, itself
// included, run and name it leader, and returns its index in Members. It
// returns an error if ctx ends first, as it does while fewer than a quorum
// of members run.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	const poll = 10 * time.Millisecond
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		if i, ok := c.leader(); ok {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("embedded: no leader: %w", ctx.Err())
		case <-ticker.C:
		}
	}
}

// leader returns the index of the running member that a quorum of running
// members, itself included, name leader. A member that just lost its
// followers still names itself until raft's quorum check demotes it; the
// quorum rule keeps it from counting meanwhile.
func (c *Cluster) leader() (int, bool) {
	votes := make(map[uint64]int)
	self := make(map[uint64]int) // member ID -> index, of running members
	for i, m := range c.members {
		e := m.Etcd()
		if e == nil {
			continue
		}
		self[uint64(e.Server.MemberID())] = i
		if l := e.Server.Lead(); l != 0 {
			votes[l]++
		}
	}
	quorum := len(c.members)/2 + 1
	for l, n := range votes {
		if i, ok := self[l]; ok && n >= quorum {
			e := c.members[i].Etcd()
			if e != nil && e.Server.Lead() == l {
				return i, true
			}
		}
	}
	return -1, false
}

// StopLeader stops the current leader, as Server.Stop does, and returns its
// index in Members; Members()[i].Restart() brings it back. Being a clean
// shutdown, it hands leadership over first, so another member leads as
// soon as it returns. To lose the leader as in a crash, Kill it:
//
//	i, err := c.Leader()
//	...
//	err = c.Members()[i].Kill()
func (c *Cluster) StopLeader() (int, error) {
	i, err := c.Leader()
	if err != nil {
		return -1, err
	}
	if err := c.members[i].Stop(); err != nil {
		return -1, err
	}
	return i, nil
}

// Close stops every member, as Server.Kill does, and removes the temporary
// directories created for the cluster. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		// Cut the links between members first, so that no member waits
		// for a peer while it stops.
		for _, f := range c.peerFwds {
			errs = append(errs, f.Close())
		}
		merrs := make([]error, len(c.members))
		var wg sync.WaitGroup
		for i, m := range c.members {
			wg.Go(func() { merrs[i] = m.Close() })
		}
		wg.Wait()
		errs = append(errs, merrs...)
		errs = append(errs, removeAll(c.ownedDirs))
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// randomToken returns a cluster token unique to this start, so that members
// of different clusters never mistake each other for peers.
func randomToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("embedded: cluster token: %w", err)
	}
	return "etcdtest-" + hex.EncodeToString(b), nil
}
