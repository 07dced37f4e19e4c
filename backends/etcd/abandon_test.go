package etcd_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// A owns svc/k until B registers it: B is the later writer, A reports a
// conflict. A's application then updates the instance with a Register
// whose context ends while A is cut off. The update must not land when
// the link comes back, nor A's previous value be restored over B's (issue
// #20 item 6).
func TestAbandonedUpdateDoesNotTakeTheKeyFromALaterWriter(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	proxy := etcdtest.StartProxy(t, srv.Endpoints()[0])
	cfgA := testConfig(t, []string{proxy.Endpoint()})
	cfgA.TTL = 5 * time.Second // the cut is far shorter
	a := newBackend(t, cfgA)
	bk := newBackend(t, testConfig(t, srv.Endpoints()))
	key := a.Key("svc", "k")

	register(t, a, instance("svc", "k"))
	register(t, bk, instance("svc", "k"))
	testwait.Until(t, waitFor, "A reports the conflict", func() bool { return stateOf(a, "svc", "k") == discovery.StateConflict })

	proxy.Reject()
	update := instance("svc", "k")
	update.Metadata = map[string]string{"version": "2"}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	abandoned := time.Now()
	if err := a.Register(ctx, update); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register(update) while cut off = %v; want its deadline exceeded", err)
	}
	proxy.Accept() // back within the RequestTimeout of a write sent in the background

	// A is back and has written since: a write of another instance went through.
	register(t, a, instance("svc", "other"))
	// A write bounded by the RequestTimeout from the abandonment would have landed by now.
	for time.Since(abandoned) < 2*cfgA.RequestTimeout {
		time.Sleep(testwait.Interval)
	}
	if !eventually(waitFor, func() bool { return stateOf(a, "svc", "k") == discovery.StateConflict }) {
		t.Errorf("A's status = %v; want conflict", stateOf(a, "svc", "k"))
	}
	resp, err := getKey(cli, key, time.Second)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %v", key, resp, err)
	}
	if got := clientv3.LeaseID(resp.Kvs[0].Lease); got != bk.Lease() || strings.Contains(string(resp.Kvs[0].Value), `"version"`) {
		t.Errorf("key under lease %x with %s; want B's (lease %x) value", got, resp.Kvs[0].Value, bk.Lease())
	}
	if st := stateOf(bk, "svc", "k"); st != discovery.StateRegistered {
		t.Errorf("B's status = %v; want registered", st)
	}
}

// latePut makes a client's first put of one key (armed with arm) land
// late, as a request that etcd received but applied only after what the
// client sent next: the caller sees it go out (sent) and, once its
// context ends, gets its error; etcd gets it only when the test releases
// it, and its answer goes to landed. Every delete of the key sent in a
// transaction is counted; the answer to the first closes deleted, that to
// the second redeleted; beforeRedelete, if set, runs before the second is
// sent.
type latePut struct {
	key            atomic.Pointer[string]
	once           sync.Once
	sent           chan struct{}
	release        chan struct{}
	landed         chan latePutResult
	beforeRedelete func()

	mu        sync.Mutex
	deletes   int
	deleted   chan struct{}
	redeleted chan struct{}
}

type latePutResult struct {
	rev int64
	err error
}

func newLatePut() *latePut {
	return &latePut{sent: make(chan struct{}), deleted: make(chan struct{}), redeleted: make(chan struct{}),
		release: make(chan struct{}), landed: make(chan latePutResult, 1)}
}

func (l *latePut) arm(key string) { l.key.Store(&key) }

func (l *latePut) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	key := l.key.Load()
	if key == nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	switch r := req.(type) {
	case *pb.PutRequest:
		held := false
		if string(r.Key) == *key {
			l.once.Do(func() { held = true })
		}
		if !held {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		close(l.sent)
		go func() {
			<-l.release
			var resp pb.PutResponse
			err := invoker(context.WithoutCancel(ctx), method, req, &resp, cc, opts...)
			l.landed <- latePutResult{rev: resp.GetHeader().GetRevision(), err: err}
		}()
		<-ctx.Done()
		return ctx.Err()
	case *pb.TxnRequest:
		if !deletes(r, *key) {
			break
		}
		l.mu.Lock()
		l.deletes++
		n := l.deletes
		l.mu.Unlock()
		if n == 2 && l.beforeRedelete != nil {
			l.beforeRedelete()
		}
		err := invoker(ctx, method, req, reply, cc, opts...)
		switch {
		case err == nil && n == 1:
			close(l.deleted)
		case err == nil && n == 2:
			close(l.redeleted)
		}
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// deletes reports whether txn deletes key, in any branch, at any depth.
func deletes(txn *pb.TxnRequest, key string) bool {
	for _, ops := range [][]*pb.RequestOp{txn.Success, txn.Failure} {
		for _, op := range ops {
			if d := op.GetRequestDeleteRange(); d != nil && string(d.Key) == key {
				return true
			}
			if t := op.GetRequestTxn(); t != nil && deletes(t, key) {
				return true
			}
		}
	}
	return false
}

// latePutBackend starts a Backend, closed at the end of the test, whose
// client puts late the key l is armed with.
func latePutBackend(t *testing.T, srv *etcdtest.Server, l *latePut) *etcd.Backend {
	t.Helper()
	cfg := testConfig(t, srv.Endpoints())
	cfg.RequestTimeout = 5 * time.Second // the late put lands well within it, on a busy machine too
	cc := etcd.ClientConfig(cfg)
	cc.DialOptions = append(cc.DialOptions, grpc.WithChainUnaryInterceptor(l.intercept))
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	b, err := etcd.NewWithClient(cli, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// abandonWithLatePut registers in on b, gives up once its put is sent,
// waits for the Backend's cleanup delete to be answered, and only then
// lets etcd apply the put, which it checks landed under b's lease. It
// returns the put's revision.
func abandonWithLatePut(t *testing.T, b *etcd.Backend, admin *clientv3.Client, l *latePut, in discovery.Instance) int64 {
	t.Helper()
	key := b.Key(in.Service, in.ID)
	l.arm(key)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.sent: // the put went out: the caller gives up
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := b.Register(ctx, in); !errors.Is(err, context.Canceled) {
		t.Fatalf("Register(%s) = %v; want context.Canceled", in.ID, err)
	}
	select {
	case <-l.sent:
	default:
		t.Fatalf("Register(%s) sent no put of its key", in.ID)
	}
	// The Backend's cleanup delete has been answered: etcd holds nothing.
	select {
	case <-l.deleted:
	case <-time.After(waitFor):
		t.Fatalf("no delete of %s answered within %v of the abandoned Register", key, waitFor)
	}
	if resp, err := getKey(admin, key, time.Second); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("after the cleanup, get %s = %v, %v; want nothing", key, resp, err)
	}

	// Now etcd applies the put, after the delete.
	close(l.release)
	var landed latePutResult
	select {
	case landed = <-l.landed:
	case <-time.After(waitFor):
		t.Fatalf("the late put got no answer within %v", waitFor)
	}
	if landed.err != nil {
		t.Fatalf("late put: %v", landed.err)
	}
	resp, err := admin.Get(context.Background(), key, clientv3.WithRev(landed.rev))
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != b.Lease() {
		t.Fatalf("at the late put's revision %d, get %s = %v, %v; want the key under the Backend's lease %x",
			landed.rev, key, resp, err, b.Lease())
	}
	t.Logf("the late put landed at revision %d, under the Backend's lease", landed.rev)
	return landed.rev
}

// A Register abandoned while its put is in flight: the Backend deletes the
// key, but etcd applies the put only after the delete (its request was
// already sent; in a previous session TestRegisterWithEndedContextLeavesNothing
// saw the key left so, under the live lease). The put must not leave the
// key for an instance nobody registered: the Backend deletes it when it
// lands, within the write's RequestTimeout.
func TestAbandonedRegisterWhosePutLandsAfterItsCleanupLeavesNothing(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	admin := etcdtest.Client(t, srv)
	l := newLatePut()
	b := latePutBackend(t, srv, l)
	register(t, b, instance("payments", "warm")) // the lease exists
	key := b.Key("payments", "late")
	abandonWithLatePut(t, b, admin, l, instance("payments", "late"))

	if !eventually(waitFor, func() bool {
		resp, err := getKey(admin, key, time.Second)
		return err == nil && len(resp.Kvs) == 0
	}) {
		resp, err := getKey(admin, key, time.Second)
		t.Fatalf("%v after the late put, etcd still holds %s: %v (%v); want it deleted", waitFor, key, resp.Kvs, err)
	}
	if _, err := b.Status("payments", "late"); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status(late) = %v; want ErrNotRegistered", err)
	}
	if got := keyLease(admin, b.Key("payments", "warm")); got != b.Lease() {
		t.Errorf("warm instance under lease %x; want %x", got, b.Lease())
	}
}

// The delete of a late put of an abandoned Register removes that put
// only: another registrar that writes the key before the delete is sent
// keeps it.
func TestDeleteOfALatePutLeavesALaterRegistrarsKey(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	admin := etcdtest.Client(t, srv)
	l := newLatePut()
	b := latePutBackend(t, srv, l)
	register(t, b, instance("payments", "warm")) // the lease exists
	key := b.Key("payments", "late")
	theirs := `{"service":"payments","id":"late","address":"127.0.0.1:9090"}`
	var lease clientv3.LeaseID
	l.beforeRedelete = func() {
		// Another registrar takes the key between the late put and the
		// Backend's delete of it.
		g, err := admin.Grant(context.Background(), 60)
		if err != nil {
			t.Errorf("grant: %v", err)
			return
		}
		lease = g.ID
		if _, err := admin.Put(context.Background(), key, theirs, clientv3.WithLease(lease)); err != nil {
			t.Errorf("put: %v", err)
		}
	}
	abandonWithLatePut(t, b, admin, l, instance("payments", "late"))

	select {
	case <-l.redeleted:
	case <-time.After(waitFor):
		t.Fatalf("no delete of the late put answered within %v", waitFor)
	}
	resp, err := getKey(admin, key, time.Second)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s = %v, %v; want the other registrar's key", key, resp, err)
	}
	if kv := resp.Kvs[0]; clientv3.LeaseID(kv.Lease) != lease || string(kv.Value) != theirs {
		t.Errorf("%s under lease %x with %s; want the other registrar's (lease %x) %s", key, kv.Lease, kv.Value, lease, theirs)
	}
}
