package etcd_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// Tests of a registry that comes back different (wiped, restored from a
// backup), of recovery steps answered in a way the code may not expect
// (a refused watcher, a refused grant), and of honest results (Deregister
// in an outage, an abandoned update, keep-alive timing).

// eventually polls cond until it holds or d has passed, and reports
// whether it held; unlike testwait.Until it lets the test go on.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(testwait.Interval)
	}
	return true
}

// puts writes n values of key.
func puts(t *testing.T, cli *clientv3.Client, key string, n int) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		_, err := cli.Put(ctx, key, "v")
		cancel()
		if err != nil {
			t.Fatalf("put %d of %s: %v", i, key, err)
		}
	}
}

func stateOf(b *etcd.Backend, service, id string) discovery.State {
	st, err := b.Status(service, id)
	if err != nil {
		return discovery.State(0)
	}
	return st.State
}

// keyUnder reports whether key exists under lease, created after rev.
func keyUnder(cli *clientv3.Client, key string, lease clientv3.LeaseID, after int64) bool {
	resp, err := getKey(cli, key, time.Second)
	return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == lease &&
		resp.Kvs[0].CreateRevision > after
}

// A member rebuilt from an empty data directory keeps its member and
// cluster IDs, and its revision starts again at 1. The Backend writes its
// key again; then the status must say registered (issue #20 item 11) and a
// later external delete must be restored (item 1): the own-key watch must
// not wait for a revision the new history has not reached.
func TestWipedClusterOwnKeysAreWatchedAgain(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	puts(t, cli, "filler", 300)
	b := newBackend(t, testConfig(t, srv.Endpoints()))
	key := b.Key("payments", "p-1")
	register(t, b, instance("payments", "p-1"))

	if err := srv.Wipe(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, testTTL+waitFor, "the key is written again on the wiped member", func() bool {
		return b.Lease() != 0 && keyUnder(cli, key, b.Lease(), 0)
	})
	if !eventually(waitFor, func() bool { return stateOf(b, "payments", "p-1") == discovery.StateRegistered }) {
		t.Errorf("status after the rewrite on the wiped member = %v; want registered", stateOf(b, "payments", "p-1"))
	}
	del, err := cli.Delete(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(waitFor, func() bool { return keyUnder(cli, key, b.Lease(), del.Header.Revision) }) {
		t.Errorf("key deleted at revision %d on the wiped member was not restored within %v", del.Header.Revision, waitFor)
	}
	if !eventually(waitFor, func() bool { return stateOf(b, "payments", "p-1") == discovery.StateRegistered }) {
		t.Errorf("status after the delete = %v; want registered", stateOf(b, "payments", "p-1"))
	}
}

// A backup taken after the lease was granted holds the lease but not the
// keys written after it. Restored within the TTL, the keep-alive goes on;
// the instance registered after the backup must be written again (issue
// #20 item 2, keep-alive path).
func TestRestoredBackupKeepAliveGoesOnAndLaterKeysAreRewritten(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.TTL = 6 * time.Second // the restore takes far less
	b := newBackend(t, cfg)
	register(t, b, instance("payments", "a"))
	backup, err := srv.Backup()
	if err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("payments", "b"))
	lease := b.Lease()

	if err := srv.RestoreBackup(backup); err != nil {
		t.Fatal(err)
	}
	if !eventually(waitFor, func() bool { return keyUnder(cli, b.Key("payments", "b"), lease, 0) }) {
		t.Errorf("instance registered after the backup is still missing %v after the restore; status %v",
			waitFor, stateOf(b, "payments", "b"))
	}
	for _, id := range []string{"a", "b"} {
		if !keyUnder(cli, b.Key("payments", id), lease, 0) {
			t.Errorf("%s is not under lease %x", id, lease)
		}
		if st := stateOf(b, "payments", id); st != discovery.StateRegistered {
			t.Errorf("status of %s = %v; want registered", id, st)
		}
	}
	if b.Lease() != lease {
		t.Errorf("lease %x after the restore; want %x kept alive", b.Lease(), lease)
	}
}

// Restored from a backup while the Backend was cut off for longer than the
// TTL: it asks for its lease again and etcd refuses, for the backup holds
// it. That must lead to a check of the held keys, not to an assumption
// (issue #20 item 2, grant path), and no instance may be reported
// registered while its key is missing (the "found by reading" item: a
// refused grant reported every instance registered before any check).
// The restored history moves past the revision the Backend had reached,
// so that a watch resumed from there cannot tell.
func TestRestoredBackupRefusedGrantChecksTheKeys(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.TTL = 4 * time.Second // room to restore and reconnect before etcd expires the restored lease
	cfg.RequestTimeout = 300 * time.Millisecond
	b := newBackend(t, cfg)
	states := recordStates(t, b)
	register(t, b, instance("payments", "a"))
	backup, err := srv.Backup()
	if err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("payments", "b"))
	lease := b.Lease()
	keyB := b.Key("payments", "b")

	// Every status saying b is registered is checked against etcd.
	audit := auditRegistered(t, b, "b", func() bool {
		resp, err := getKey(cli, keyB, time.Second)
		return err != nil || len(resp.Kvs) > 0
	})

	proxy.Reject()
	states.waitState(t, discovery.StateRetrying, cfg.TTL+waitFor) // the keep-alive timed out
	if err := srv.RestoreBackup(backup); err != nil {
		t.Fatal(err)
	}
	puts(t, cli, "filler", 50)
	audit.armed.Store(true)
	proxy.Accept()

	if !eventually(waitFor, func() bool { return keyUnder(cli, keyB, lease, 0) }) {
		t.Errorf("instance registered after the backup is still missing %v after the Backend is back; status %v",
			waitFor, stateOf(b, "payments", "b"))
	}
	testwait.Until(t, waitFor, "both instances are registered", func() bool {
		return stateOf(b, "payments", "a") == discovery.StateRegistered && stateOf(b, "payments", "b") == discovery.StateRegistered
	})
	if n := audit.bad.Load(); n != 0 {
		t.Errorf("b was reported registered %d times while its key was missing (%d times while present)", n, audit.good.Load())
	}
	if b.Lease() != lease {
		t.Errorf("lease %x; want %x, which the backup holds (the grant must have been refused)", b.Lease(), lease)
	}
}

// With auth on, etcd refuses a watcher whose stream carries a token it no
// longer accepts (setting a user's password again invalidates its tokens),
// with Created and Canceled and watch ID -1. The next Register refreshes
// the token for its put, but its own-key watcher goes out on the old
// stream: the refusal must be taken as a failure of the stream, so that b's
// key is watched and restored (issue #20 item 3).
func TestRefusedOwnKeyWatcherIsRequested(t *testing.T) {
	t.Parallel()
	const user, password = "roster", "s3cret-pw"
	srv := etcdtest.Start(t, etcdtest.WithAuth(user, password))
	admin := etcdtest.Client(t, srv)
	cfg := testConfig(t, srv.Endpoints())
	cfg.Username, cfg.Password = user, password
	b := newBackend(t, cfg)
	register(t, b, instance("payments", "a"))

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := admin.UserChangePassword(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	register(t, b, instance("payments", "b"))
	key := b.Key("payments", "b")
	del, err := admin.Delete(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(waitFor, func() bool { return keyUnder(admin, key, b.Lease(), del.Header.Revision) }) {
		t.Errorf("b's key deleted at revision %d was not restored within %v; status %v",
			del.Header.Revision, waitFor, stateOf(b, "payments", "b"))
	}
	// a is still watched too.
	delA, err := admin.Delete(ctx, b.Key("payments", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(waitFor, func() bool { return keyUnder(admin, b.Key("payments", "a"), b.Lease(), delA.Header.Revision) }) {
		t.Errorf("a's key was not restored within %v", waitFor)
	}
}

// Restored, while the Backend was cut off for longer than the TTL, from a
// backup taken before an instance's last update: etcd refuses the grant
// (the backup holds the lease) and holds the key, under the lease, with
// the value from before the update. The check after the refused grant
// reads the values too, and writes the instance again, so that the
// registry does not go on saying what the instance said before (issue
// #21: the check reads the keys rather than the lease; the read the
// lease gave listed the keys alone, and the older value stayed). The
// restored history moves past the revision the Backend had reached, so
// that a watch resumed from there cannot tell.
func TestRestoredBackupRefusedGrantRewritesAnOlderValue(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfg := testConfig(t, []string{proxy.Endpoint()})
	cfg.TTL = 4 * time.Second // room to restore and reconnect before etcd expires the restored lease
	cfg.RequestTimeout = 300 * time.Millisecond
	b := newBackend(t, cfg)
	states := recordStates(t, b)
	in := instance("payments", "a")
	register(t, b, in)
	backup, err := srv.Backup()
	if err != nil {
		t.Fatal(err)
	}
	in.Metadata = map[string]string{"zone": "b"}
	register(t, b, in) // the update, after the backup
	key := b.Key("payments", "a")
	resp, err := getKey(cli, key, time.Second)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read %s after the update: %v, %v", key, resp, err)
	}
	updated := string(resp.Kvs[0].Value)
	lease := b.Lease()

	// Every status saying a is registered, once the backup is restored,
	// is checked against etcd: the key must hold the updated value.
	audit := auditRegistered(t, b, "a", func() bool {
		resp, err := getKey(cli, key, time.Second)
		return err != nil || (len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == updated)
	})

	proxy.Reject()
	states.waitState(t, discovery.StateRetrying, cfg.TTL+waitFor) // the keep-alive timed out
	if err := srv.RestoreBackup(backup); err != nil {
		t.Fatal(err)
	}
	if resp, err := getKey(cli, key, time.Second); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) == updated {
		t.Fatalf("the restored backup holds %v (%v); want the value from before the update", resp, err)
	}
	puts(t, cli, "filler", 50)
	audit.armed.Store(true)
	proxy.Accept()

	testwait.Until(t, waitFor, "the updated value is written again", func() bool {
		resp, err := getKey(cli, key, time.Second)
		return err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == updated && clientv3.LeaseID(resp.Kvs[0].Lease) == lease
	})
	testwait.Until(t, waitFor, "a is registered", func() bool { return stateOf(b, "payments", "a") == discovery.StateRegistered })
	if n := audit.bad.Load(); n != 0 {
		t.Errorf("a was reported registered %d times while etcd held its older value (%d times with the updated one)", n, audit.good.Load())
	}
	if b.Lease() != lease {
		t.Errorf("lease %x; want %x, which the backup holds (the grant must have been refused)", b.Lease(), lease)
	}
}

// registeredAudit counts, once armed, the statuses saying an instance is
// registered that etcd bears out (good) and those it does not (bad).
type registeredAudit struct {
	armed     atomic.Bool
	good, bad atomic.Int32
}

// auditRegistered checks every status of b saying instance id is
// registered, once the audit is armed, with holds, which reads etcd (and
// gives true when it cannot tell), until the test ends.
func auditRegistered(t *testing.T, b *etcd.Backend, id string, holds func() bool) *registeredAudit {
	t.Helper()
	a := &registeredAudit{}
	sub := b.SubscribeStatus()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			if !a.armed.Load() || st.Instance.ID != id || st.State != discovery.StateRegistered {
				continue
			}
			if holds() {
				a.good.Add(1)
			} else {
				a.bad.Add(1)
			}
		}
	}()
	t.Cleanup(func() { sub.Stop(); <-done })
	return a
}
