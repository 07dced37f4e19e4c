package etcdtest_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// putEventually puts key=val through a cluster client that just lost a
// member: the client may first pick the stopped member or race the
// election, so the put must succeed within a few seconds, not at once.
func putEventually(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Put(ctx, key, val)
		cancel()
		if err == nil {
			return
		}
		t.Logf("put %s: %v", key, err)
	}
	t.Fatalf("put %s: %v", key, err)
}

func TestClusterStopLeader(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	members := c.Members()
	if len(members) != 3 || len(c.Endpoints()) != 3 || len(c.ClientConfig().Endpoints) != 3 {
		t.Fatalf("cluster of %d members, %d endpoints", len(members), len(c.Endpoints()))
	}
	cli := etcdtest.Client(t, c)
	put(t, cli, "k", "v1")

	start := time.Now()
	old, err := c.StopLeader()
	if err != nil {
		t.Fatalf("StopLeader: %v", err)
	}
	t.Logf("StopLeader took %v", time.Since(start))
	if members[old].Running() {
		t.Fatalf("leader %d still running after StopLeader", old)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start = time.Now()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	t.Logf("new leader %d (was %d) after %v", lead, old, time.Since(start))
	if lead == old {
		t.Fatalf("new leader %d is the stopped one", lead)
	}

	putEventually(t, cli, "k", "v2")

	start = time.Now()
	if err := members[old].Restart(); err != nil {
		t.Fatalf("Restart old leader: %v", err)
	}
	t.Logf("Restart of the old leader took %v", time.Since(start))
	// Read from the restarted member alone: it caught up.
	cfg := c.ClientConfig()
	cfg.Endpoints = members[old].Endpoints()
	only, err := newClient(t, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mustGet(t, only, "k", "v2")
	if _, err := c.Leader(); err != nil {
		t.Fatalf("Leader after Restart: %v", err)
	}
}

// TestClusterKillLeader also runs the cluster with TLS and authentication,
// and in a data directory of the test's.
func TestClusterKillLeader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := etcdtest.StartCluster(t, 3, etcdtest.WithTLS(), etcdtest.WithAuth("root", "secret"), etcdtest.WithDataDir(dir))
	cfg := c.ClientConfig()
	if cfg.TLS == nil || cfg.Username != "root" {
		t.Fatalf("ClientConfig() lacks TLS or credentials: %+v", cfg)
	}
	for i, m := range c.Members() {
		if want := filepath.Join(dir, "m"+strconv.Itoa(i)); m.DataDir() != want {
			t.Fatalf("member %d DataDir() = %q, want %q", i, m.DataDir(), want)
		}
	}
	cli := etcdtest.Client(t, c)
	put(t, cli, "k", "v1")

	old, err := c.Leader()
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	start := time.Now()
	if err := c.Members()[old].Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	t.Logf("Kill took %v", time.Since(start))
	lead, err := c.Leader()
	if err != nil {
		t.Fatalf("Leader after Kill: %v", err)
	}
	t.Logf("new leader %d (was %d) after %v", lead, old, time.Since(start))
	if lead == old {
		t.Fatalf("new leader %d is the killed one", lead)
	}
	putEventually(t, cli, "k", "v2")

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := etcdtest.NewCluster(3, etcdtest.WithDataDir(dir)); err == nil {
		t.Fatal("NewCluster in the data directory of a previous cluster succeeded")
	}
}

func TestClusterNoQuorum(t *testing.T) {
	t.Parallel()
	c := etcdtest.StartCluster(t, 3)
	for _, m := range c.Members()[:2] {
		if err := m.Kill(); err != nil {
			t.Fatalf("Kill: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if lead, err := c.WaitLeader(ctx); err == nil {
		t.Fatalf("WaitLeader = %d with one member of three, want an error", lead)
	}
}
