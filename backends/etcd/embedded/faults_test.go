package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func startSingle(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := New(opts...)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close etcd: %v", err)
		}
	})
	return s
}

// ids returns the member and cluster IDs and the revision a Get of key
// sees, and whether key exists.
func ids(t *testing.T, cli *clientv3.Client, key string) (member, cluster uint64, rev int64, found bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return resp.Header.MemberId, resp.Header.ClusterId, resp.Header.Revision, len(resp.Kvs) == 1
}

func mustPut(t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, "v", opts...); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestWipeKeepsIdentityAndEmptiesTheStore(t *testing.T) {
	t.Parallel()
	s := startSingle(t, WithAuth("roster", "secret"))
	cli := newTestClient(t, s)
	for range 20 {
		mustPut(t, cli, "k")
	}
	member, cluster, rev, _ := ids(t, cli, "k")
	if err := s.Wipe(); err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	// The same credentials work: the user was set up again.
	m2, c2, rev2, found := ids(t, cli, "k")
	if m2 != member || c2 != cluster {
		t.Errorf("after Wipe member/cluster = %x/%x, want %x/%x", m2, c2, member, cluster)
	}
	if found || rev2 >= rev {
		t.Errorf("after Wipe: key found %v at revision %d; want gone and a revision below %d", found, rev2, rev)
	}
}

func TestRestoreBackupGoesBackToTheMomentOfTheBackup(t *testing.T) {
	t.Parallel()
	s := startSingle(t)
	cli := newTestClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, cli, "before", clientv3.WithLease(lease.ID))
	member, cluster, rev, _ := ids(t, cli, "before")

	b, err := s.Backup()
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	mustPut(t, cli, "after", clientv3.WithLease(lease.ID))
	later, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}

	for round := range 2 { // a backup can be restored more than once
		if err := s.RestoreBackup(b); err != nil {
			t.Fatalf("RestoreBackup: %v", err)
		}
		m2, c2, rev2, found := ids(t, cli, "before")
		if m2 != member || c2 != cluster || rev2 != rev || !found {
			t.Errorf("round %d: after restore member/cluster %x/%x revision %d before-key %v; want %x/%x %d true",
				round, m2, c2, rev2, found, member, cluster, rev)
		}
		if _, _, _, found := ids(t, cli, "after"); found {
			t.Errorf("round %d: key written after the backup is present after the restore", round)
		}
		ttl, err := cli.TimeToLive(ctx, lease.ID)
		if err != nil || ttl.TTL <= 0 {
			t.Errorf("round %d: lease from before the backup: TTL %v, err %v; want alive", round, ttl, err)
		}
		if ttl, err := cli.TimeToLive(ctx, later.ID); err != nil || ttl.TTL != -1 {
			t.Errorf("round %d: lease granted after the backup: %v, err %v; want not found (TTL -1)", round, ttl, err)
		}
		mustPut(t, cli, "after") // the restored store takes writes
	}

	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.RestoreBackup(b); !errors.Is(err, ErrForeignBackup) {
		t.Errorf("RestoreBackup of a released backup = %v, want ErrForeignBackup", err)
	}
	other := startSingle(t)
	b2, err := other.Backup()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RestoreBackup(b2); !errors.Is(err, ErrForeignBackup) {
		t.Errorf("RestoreBackup of another server's backup = %v, want ErrForeignBackup", err)
	}
}

func TestWipeAndBackupRefuseClusterMembers(t *testing.T) {
	t.Parallel()
	m := &Server{peerGate: &Proxy{}}
	if err := m.Wipe(); !errors.Is(err, ErrNotSingle) {
		t.Errorf("Wipe = %v, want ErrNotSingle", err)
	}
	if _, err := m.Backup(); !errors.Is(err, ErrNotSingle) {
		t.Errorf("Backup = %v, want ErrNotSingle", err)
	}
}

// newTestClient returns a client for s (a Server or a Cluster), closed when
// t and its subtests have finished.
func newTestClient(t testing.TB, s interface{ ClientConfig() clientv3.Config }) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(s.ClientConfig())
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
