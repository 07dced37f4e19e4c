package etcd_test

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

// streamGate holds back the opening of new watch streams of one client
// while it is shut, so that a test decides when a watch may reconnect:
// every other request goes through.
type streamGate struct {
	mu   sync.Mutex
	shut chan struct{} // nil while open; closed on open
}

// hold makes new watch streams wait until release.
func (g *streamGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut == nil {
		g.shut = make(chan struct{})
	}
}

// release lets the waiting and later watch streams open.
func (g *streamGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut != nil {
		close(g.shut)
		g.shut = nil
	}
}

func (g *streamGate) wait(ctx context.Context) error {
	g.mu.Lock()
	shut := g.shut
	g.mu.Unlock()
	if shut == nil {
		return nil
	}
	select {
	case <-shut:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedBackend starts a Backend on a client of its own whose watch
// streams wait for the returned gate. Both are closed at the end of the
// test.
func gatedBackend(t testing.TB, cfg etcd.Config) (*etcd.Backend, *streamGate) {
	t.Helper()
	g := &streamGate{}
	cc := etcd.ClientConfig(cfg)
	cc.DialOptions = append(cc.DialOptions, grpc.WithChainStreamInterceptor(
		func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
			streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if method == "/etcdserverpb.Watch/Watch" {
				if err := g.wait(ctx); err != nil {
					return nil, err
				}
			}
			return streamer(ctx, desc, cc, method, opts...)
		}))
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	b, err := etcd.NewWithClient(cli, cfg)
	if err != nil {
		t.Fatalf("etcd.NewWithClient: %v", err)
	}
	t.Cleanup(func() {
		g.release()
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, g
}

// TestRollbackSeenInAResponseHeaderChecksTheKeys: etcd is restored from a
// backup that lacks instance b, and its own-key watch cannot reconnect
// until other processes have written past the revision it reached, so the
// watch's Created header cannot tell. The first answer the Backend gets
// from the restored etcd, a write of its own or a read, carries a revision
// below the one it had seen: that must lead to a check of its keys, which
// restores b (issue #20, rollback detection from response headers). With
// no such answer (case none: a process that only keeps its lease alive),
// the own-key watch, resuming b from b's last change, does not get that
// change again, which tells it as well.
func TestRollbackSeenInAResponseHeaderChecksTheKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		first func(t *testing.T, b *etcd.Backend) // the Backend's first request to the restored etcd
	}{
		{"write", func(t *testing.T, b *etcd.Backend) { register(t, b, instance("orders", "c")) }},
		{"none", nil}, // the own-key watch must tell by itself
		{"read", func(t *testing.T, b *etcd.Backend) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if _, err := b.Resolve(ctx, "orders"); err != nil {
				t.Fatalf("Resolve: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := etcdtest.Start(t)
			cli := etcdtest.Client(t, srv)
			cfg := testConfig(t, srv.Endpoints())
			cfg.TTL = 6 * time.Second // the restore takes far less: the lease is kept alive
			b, gate := gatedBackend(t, cfg)
			register(t, b, instance("payments", "a"))
			backup, err := srv.Backup()
			if err != nil {
				t.Fatal(err)
			}
			register(t, b, instance("payments", "b"))
			lease := b.Lease()
			keyB := b.Key("payments", "b")

			gate.hold()
			if err := srv.RestoreBackup(backup); err != nil {
				t.Fatal(err)
			}
			if tc.first != nil {
				tc.first(t, b)
			}
			puts(t, cli, "filler", 50) // other processes write past the revision reached
			gate.release()

			if !eventually(waitFor, func() bool { return keyUnder(cli, keyB, lease, 0) }) {
				t.Errorf("instance missing since the restore is still missing %v later; status %v",
					waitFor, stateOf(b, "payments", "b"))
			}
			if st := stateOf(b, "payments", "b"); st != discovery.StateRegistered {
				t.Errorf("status of b = %v; want registered", st)
			}
			// The own-key watch follows the restored history: a delete
			// is restored.
			del, err := cli.Delete(context.Background(), b.Key("payments", "a"))
			if err != nil {
				t.Fatal(err)
			}
			if !eventually(waitFor, func() bool { return keyUnder(cli, b.Key("payments", "a"), lease, del.Header.Revision) }) {
				t.Errorf("key a deleted at revision %d after the restore was not restored within %v", del.Header.Revision, waitFor)
			}
		})
	}
}
