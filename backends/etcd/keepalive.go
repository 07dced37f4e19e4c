package etcd

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// keepAlive keeps one lease alive on a LeaseKeepAlive stream of its own:
// a request a third of the TTL after the last answer, as clientv3's lessor
// does, but none right after a grant, whose TTL is whole. It ends, closing
// done, when etcd says the lease is gone, when no answer has come for the
// TTL (etcd may have expired it meanwhile), or when its context ends.
// Its stream is open from the start, and when it fails (an outage) a
// request goes out on the next one as soon as the connection is usable
// again, so that an etcd that came back without the lease is noticed at
// once rather than at the next renewal.
//
// One goroutine runs it and another reads the stream; clientv3's
// KeepAlive would add four more per client and a request at once.
type keepAlive struct {
	leases pb.LeaseClient
	lease  clientv3.LeaseID
	ttl    time.Duration // as granted
	log    hclog.Logger
	facts  *leaseFacts // told of every answer
	// expired is called, on the keep-alive's goroutine, as soon as etcd
	// has not confirmed the lease for as long as it keeps it, before done
	// is closed: from then on the Backend must not say registered (etcd
	// may have expired the lease), whatever it does next.
	expired func()
	// grace is how long, after expired, it waits for the answer to a
	// request already sent on the stream that is still open; confirmed
	// is called, on its goroutine, if that answer says etcd has the
	// lease. Without grace, or without such a request, it ends at once.
	grace     time.Duration
	confirmed func()

	done chan struct{}
	err  error // why it ended; read after done is closed
}

// Why a keep-alive ends.
var (
	errKeepAliveGone    = errors.New("etcd no longer has the lease")
	errKeepAliveTimeout = errors.New("no keep-alive answer within the lease TTL")
)

// keepAliveRetry is how soon the keep-alive asks again, on a new stream,
// after the stream carrying its request failed.
const keepAliveRetry = 500 * time.Millisecond

// startKeepAlive keeps lease alive until ctx ends. etcd keeps the lease
// for left from since (the sending of the request that said so: the
// grant, whose TTL is whole, or the refused grant of a lease that outlived
// an outage): the first request goes a third of that after since. With
// spread, left is not a figure etcd gave (a lease kept through an outage,
// whose remaining TTL etcd did not say), and the first request goes at a
// random moment within that third instead: early, to learn the TTL, but
// not all at once from a fleet that a restart brought back together.
// Without an answer by since+left, expired is called (and see grace).
func startKeepAlive(ctx context.Context, leases pb.LeaseClient, lease clientv3.LeaseID, ttl, left time.Duration,
	since time.Time, spread bool, expired func(), grace time.Duration, confirmed func(),
	log hclog.Logger, wg *sync.WaitGroup, facts *leaseFacts) *keepAlive {
	k := &keepAlive{leases: leases, lease: lease, ttl: ttl, log: log, facts: facts, expired: expired,
		grace: grace, confirmed: confirmed, done: make(chan struct{})}
	firstIn := max(0, time.Until(since.Add(left/3)))
	if spread && firstIn > 0 {
		firstIn = rand.N(firstIn)
	}
	wg.Go(func() { k.run(ctx, left, since, firstIn, wg) })
	return k
}

// keepAliveStream is one stream, opened by its own goroutine, which then
// reads it.
type keepAliveStream struct {
	ready  chan pb.Lease_LeaseKeepAliveClient // the stream, once open
	resps  chan *pb.LeaseKeepAliveResponse
	failed chan error // capacity 1; the goroutine's last word
	cancel context.CancelFunc

	stream  pb.Lease_LeaseKeepAliveClient // nil until ready
	waiting bool                          // a request is due once ready
}

func (k *keepAlive) run(ctx context.Context, left time.Duration, since time.Time, firstIn time.Duration, wg *sync.WaitGroup) {
	defer close(k.done)
	var (
		st *keepAliveStream
		// sent holds when each request awaiting an answer on st went
		// out, oldest first: a stream answers in order, and a request
		// can go out before the previous one is answered (a round trip
		// longer than a third of the TTL).
		sent []time.Time
		// late is set while it waits, past the expiry, for the answer
		// to a request sent on the stream still open.
		late bool
	)
	defer func() {
		if st != nil {
			st.cancel()
		}
	}()
	// The stream is opened now, without a request: its failure tells of
	// an outage, after which the keep-alive asks at once (see failed).
	st = k.open(ctx, wg)
	// An answer must come by then. etcd reads a remaining TTL in whole
	// seconds, rounded down: a lease it says has 0 s left has less than a
	// second, as long as an answer takes on a good link.
	expiry := time.NewTimer(time.Until(since.Add(max(left, keepAliveRetry))))
	defer expiry.Stop()
	tick := time.NewTimer(firstIn) // the next request
	defer tick.Stop()
	send := func() {
		sent = append(sent, time.Now())
		if err := st.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(k.lease)}); err != nil {
			// The reader reports why the stream failed.
			k.log.Debug("keep-alive request failed", "lease", leaseString(k.lease), "error", err)
		}
	}
	for {
		var (
			ready  <-chan pb.Lease_LeaseKeepAliveClient
			resps  <-chan *pb.LeaseKeepAliveResponse
			failed <-chan error
		)
		if st != nil {
			ready, resps, failed = st.ready, st.resps, st.failed
		}
		select {
		case <-ctx.Done():
			k.err = ctx.Err()
			return
		case <-expiry.C:
			if !late && k.expired != nil {
				k.expired()
			}
			if !late && k.grace > 0 && st != nil && st.stream != nil && len(sent) > 0 {
				// etcd may answer late (a loaded cluster, a leader
				// change): an answer on this stream tells the same as
				// granting and reading the lease again would, for one
				// request already sent.
				late = true
				expiry.Reset(k.grace)
				continue
			}
			k.err = errKeepAliveTimeout
			return
		case <-tick.C:
			// Without an answer, ask again a third of the TTL later.
			tick.Reset(k.ttl / 3)
			switch {
			case st == nil:
				st = k.open(ctx, wg)
				st.waiting = true
			case st.stream == nil:
				st.waiting = true
			default:
				send()
			}
		case stream := <-ready:
			st.stream = stream
			if st.waiting {
				st.waiting = false
				send()
			}
		case resp := <-resps:
			if resp.TTL <= 0 {
				k.err = errKeepAliveGone
				return
			}
			// etcd extended the lease on receiving the request, after it
			// was sent: from the sending, the lease has at least TTL.
			now := time.Now()
			from, rtt := now, time.Duration(0)
			if len(sent) > 0 {
				from, rtt = sent[0], now.Sub(sent[0])
				sent = sent[1:]
			}
			granted := time.Duration(resp.TTL) * time.Second
			k.facts.renewed(from.Add(granted), rtt)
			if late {
				late = false
				if k.confirmed != nil {
					k.confirmed()
				}
			}
			expiry.Reset(time.Until(from.Add(granted)))
			tick.Reset(granted / 3)
		case err := <-failed:
			if late {
				// Past the TTL with the stream gone: etcd may have
				// been restarted, or restored; establish finds out.
				k.err = errKeepAliveTimeout
				return
			}
			k.log.Debug("keep-alive stream failed, opening another", "lease", leaseString(k.lease), "error", err)
			st.cancel()
			st = nil
			sent = nil
			// Ask again on the next stream soon, which goes out as soon
			// as the connection is usable, even with no request lost
			// with this one: a stream fails when the link or etcd does,
			// and etcd may have come back without the lease (wiped, or
			// restored from a backup). The answer says so (TTL 0) at
			// the cost of one request, which replaces the next one due.
			// The own-key watch cannot tell: resuming from the revision
			// it reached, it sees no rollback once other processes have
			// written that far into the new history (issue #23). The
			// delay keeps a stream that fails at once (no leader) from
			// spinning.
			tick.Reset(keepAliveRetry)
		}
	}
}

// open starts a goroutine that opens a stream, waiting for a usable
// connection, hands it over on ready, and then delivers its answers until
// it fails or is cancelled.
func (k *keepAlive) open(ctx context.Context, wg *sync.WaitGroup) *keepAliveStream {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	st := &keepAliveStream{
		ready:  make(chan pb.Lease_LeaseKeepAliveClient, 1),
		resps:  make(chan *pb.LeaseKeepAliveResponse),
		failed: make(chan error, 1),
		cancel: cancel,
	}
	wg.Go(func() {
		stream, err := k.leases.LeaseKeepAlive(sctx, grpc.WaitForReady(true))
		if err != nil {
			st.failed <- err
			return
		}
		st.ready <- stream
		for {
			resp, err := stream.Recv()
			if err != nil {
				st.failed <- err
				return
			}
			select {
			case st.resps <- resp:
			case <-sctx.Done():
				return
			}
		}
	})
	return st
}
