package etcd_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// overload answers the transactions of a client as an overloaded etcd does
// ("too many requests", ResourceExhausted) while on, and records how many
// operations each transaction asked for.
type overload struct {
	on  atomic.Bool
	mu  sync.Mutex
	ops []int // per transaction refused
}

func (o *overload) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if txn, ok := req.(*pb.TxnRequest); ok && o.on.Load() {
		o.mu.Lock()
		o.ops = append(o.ops, len(txn.Success))
		o.mu.Unlock()
		return rpctypes.ErrGRPCRequestTooManyRequests
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (o *overload) refused() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.ops...)
}

// An overloaded etcd refuses a batch with "too many requests": that is no
// refusal of one key, and splitting the batch would send up to 2n-1
// requests for n keys, exactly when etcd is overloaded. The batch is
// backed off, whole ("found by reading" item of issue #20).
func TestTooManyRequestsBacksOffTheBatchWhole(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	admin := etcdtest.Client(t, srv)
	o := &overload{}
	ccfg := srv.ClientConfig()
	ccfg.DialOptions = append(ccfg.DialOptions, grpc.WithChainUnaryInterceptor(o.intercept))
	cli, err := clientv3.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	b, err := etcd.NewWithClient(cli, testConfig(t, srv.Endpoints()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	const n = 64
	for i := range n {
		register(t, b, instance("payments", fmt.Sprintf("p-%02d", i)))
	}

	// Every key must be written again, in one batch, while etcd is overloaded.
	o.on.Store(true)
	if _, err := admin.Revoke(context.Background(), b.Lease()); err != nil {
		t.Fatal(err)
	}
	// Once the lease is granted again, every key is to be written: a
	// transaction of all n is refused, and what follows it shows whether
	// the batch was split.
	full := func(got []int) int {
		for i, ops := range got {
			if ops == n {
				return i
			}
		}
		return -1
	}
	ok := eventually(waitFor, func() bool {
		got := o.refused()
		i := full(got)
		return i >= 0 && len(got) >= i+3
	})
	o.on.Store(false)
	if !ok {
		got := o.refused()
		t.Fatalf("no transaction of all %d keys followed by two more within %v: %d requests refused, operations %v",
			n, waitFor, len(got), got)
	}
	got := o.refused()
	t.Logf("operations in each refused transaction: %v", got)
	first := full(got)
	for i := first + 1; i < len(got); i++ {
		if got[i] != n {
			t.Errorf("refused transaction %d carried %d operations after one of all %d: the batch was split (%d requests refused in all: %v)",
				i+1, got[i], n, len(got), got)
			break
		}
	}
	testwait.Until(t, waitFor, "every instance is restored and registered", func() bool {
		if countKeys(admin, "payments") != n {
			return false
		}
		for _, st := range b.Statuses() {
			if st.State != discovery.StateRegistered {
				return false
			}
		}
		return true
	})
}
