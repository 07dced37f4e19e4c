package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/resolver"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/discovery/grpcresolver"
	"github.com/roster-sd/roster/internal/testing/heldresolver"
	"github.com/roster-sd/roster/internal/testing/revisiontest"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// Tests of the revisions the Backend gives with its sets
// (discovery.RevisionResolver): a service's revision is the last stream
// sequence that touched it.

// revisionWait bounds every wait of these tests for something that must
// happen.
const revisionWait = 15 * time.Second

// revisionResolver returns b as a discovery.RevisionResolver, failing t if
// it is not one.
func revisionResolver(t *testing.T, b *nats.Backend) discovery.RevisionResolver {
	t.Helper()
	rr, ok := any(b).(discovery.RevisionResolver)
	if !ok {
		t.Fatal("the NATS Backend is not a discovery.RevisionResolver: its sets carry no revision")
	}
	return rr
}

// touches reports whether the message at sequence seq of the bucket's
// stream is on a key of service (whose name holds no '.').
func touches(ctx context.Context, t *testing.T, js jetstream.JetStream, seq uint64, service string) bool {
	t.Helper()
	s, err := js.Stream(ctx, "KV_roster")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Renewed since: a later message of the same key replaced it.
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.HasPrefix(m.Subject, "$KV.roster."+service+".")
}

// lastSeq returns the last sequence of the bucket's stream.
func lastSeq(ctx context.Context, t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, "KV_roster")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func ids(set []discovery.Instance) string {
	out := make([]string, 0, len(set))
	for _, in := range set {
		out = append(out, in.ID)
	}
	return strings.Join(out, " ")
}

// Resolve and Watch give each set with the stream sequence of the last
// message on one of the service's keys: a later set has a higher one, the
// two agree, and writes to another service do not count.
func TestRevisionsAreTheServicesStreamSequences(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	a := newBackend(t, testConfig(t, srv.URL(), "roster"))
	c := newBackend(t, testConfig(t, srv.URL(), "roster"))
	rr := revisionResolver(t, c)
	js := rawJSOf(t, srv.URL())
	ctx, cancel := context.WithTimeout(t.Context(), revisionWait)
	defer cancel()

	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	if err := a.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	set, r1, err := rr.ResolveRevision(ctx, "payments")
	if err != nil || ids(set) != "p-1" {
		t.Fatalf("ResolveRevision = %v, %v; want p-1", set, err)
	}
	if r1 == 0 || r1 > lastSeq(ctx, t, js) || !touches(ctx, t, js, r1, "payments") {
		t.Fatalf("ResolveRevision's revision %d: want the sequence of a message on a payments key (stream at %d)", r1, lastSeq(ctx, t, js))
	}

	w, err := c.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	rw, ok := w.(discovery.RevisionWatcher)
	if !ok {
		t.Fatal("the Backend's watcher is not a discovery.RevisionWatcher")
	}
	set, w1, err := rw.NextRevision(ctx)
	if err != nil || ids(set) != "p-1" {
		t.Fatalf("first NextRevision = %v, %v; want p-1", set, err)
	}
	if w1 < r1 || !touches(ctx, t, js, w1, "payments") {
		t.Fatalf("first NextRevision's revision %d: want a payments message at or after Resolve's %d", w1, r1)
	}

	// Another service's writes move the stream, not payments' revision.
	for i := range 5 {
		in := discovery.Instance{Service: "orders", ID: fmt.Sprint("o-", i), Address: fmt.Sprint("10.0.1.", i, ":80")}
		if err := a.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	if err := a.Register(ctx, p2); err != nil {
		t.Fatal(err)
	}
	set, w2, err := rw.NextRevision(ctx)
	if err != nil || ids(set) != "p-1 p-2" {
		t.Fatalf("NextRevision after p-2 = %v, %v; want p-1 p-2", set, err)
	}
	if w2 <= w1 || !touches(ctx, t, js, w2, "payments") {
		t.Fatalf("NextRevision after p-2: revision %d; want a payments message after %d", w2, w1)
	}
	set, r2, err := rr.ResolveRevision(ctx, "payments")
	if err != nil || ids(set) != "p-1 p-2" || r2 < w2 || !touches(ctx, t, js, r2, "payments") {
		t.Fatalf("ResolveRevision after p-2 = %v, %d, %v; want p-1 p-2 at a payments message at or after %d", set, r2, err, w2)
	}
	t.Logf("revisions: resolve %d, watch %d, watch %d, resolve %d; stream at %d", r1, w1, w2, r2, lastSeq(ctx, t, js))
}

// padSequences moves the bucket's sequences well past what a new history
// reaches in these tests, with 100 writes to another key.
func padSequences(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	kv, err := js.KeyValue(ctx, "roster")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := kv.Put(ctx, "other.key", fmt.Append(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// firstRevision watches payments through r and returns the watcher, whose
// first set must be the instances want (their IDs) past sequence 100, and
// that set's revision; and another watcher of r, which the test reads up
// to the new history's set (caughtUp) so that the watcher looks only once
// the feed behind both holds it.
func firstRevision(ctx context.Context, t *testing.T, r discovery.Resolver, want string) (discovery.RevisionWatcher, uint64, discovery.Watcher) {
	t.Helper()
	w, err := r.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	rw, ok := w.(discovery.RevisionWatcher)
	if !ok {
		t.Fatal("the watcher is not a discovery.RevisionWatcher")
	}
	other, err := r.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Stop)
	set, before, err := rw.NextRevision(ctx)
	if err != nil || ids(set) != want || before <= 100 {
		t.Fatalf("first NextRevision = %v, %d, %v; want %s past sequence 100", set, before, err, want)
	}
	return rw, before, other
}

// caughtUp reads other until its set is want, skipping outages.
func caughtUp(ctx context.Context, t *testing.T, other discovery.Watcher, want []discovery.Instance) {
	t.Helper()
	for {
		set, err := other.Next(ctx)
		if errors.Is(err, discovery.ErrUnavailable) {
			continue
		}
		if err != nil {
			t.Fatalf("waiting for a watcher of the same feed to see %s: %v", ids(want), err)
		}
		if discovery.EqualSets(set, want) {
			return
		}
	}
}

// waitPublished waits until the bucket holds the keys of ins.
func waitPublished(ctx context.Context, t *testing.T, js jetstream.JetStream, ins ...discovery.Instance) {
	t.Helper()
	testwait.Until(t, revisionWait, fmt.Sprintf("%s published again", ids(ins)), func() bool {
		kv, err := js.KeyValue(ctx, "roster")
		if err != nil {
			return false
		}
		for _, in := range ins {
			key, _ := nats.KeyOf(in.Key())
			if _, err := kv.Get(ctx, key); err != nil {
				return false
			}
		}
		return true
	})
}

// A bucket deleted and created again restarts its sequences: the watcher
// reports an outage (discovery.ErrUnavailable) before any set of the new
// bucket, so that no client compares revisions across the two, and its
// revisions then follow the new bucket.
func TestRecreatedBucketResetsTheWatchersRevisions(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	a := newBackend(t, testConfig(t, srv.URL(), "roster"))
	c := newBackend(t, testConfig(t, srv.URL(), "roster"))
	js := rawJSOf(t, srv.URL())
	ctx, cancel := context.WithTimeout(t.Context(), revisionWait)
	defer cancel()

	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	if err := a.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	padSequences(ctx, t, js)
	if err := a.Register(ctx, discovery.Instance{Service: "payments", ID: "p-0", Address: "10.0.0.9:80"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Deregister(ctx, discovery.Instance{Service: "payments", ID: "p-0", Address: "10.0.0.9:80"}); err != nil {
		t.Fatal(err)
	}
	rw, before, other := firstRevision(ctx, t, c, "p-1")

	if err := js.DeleteKeyValue(ctx, "roster"); err != nil {
		t.Fatal(err)
	}
	// The Backends create the bucket again and publish p-1 there; p-2
	// then comes.
	waitPublished(ctx, t, js, p1)
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	if err := a.Register(ctx, p2); err != nil {
		t.Fatal(err)
	}
	caughtUp(ctx, t, other, []discovery.Instance{p1, p2})
	revisiontest.NewHistory(ctx, t, rw, before, []discovery.Instance{p1, p2})
}

// A server restarted without its data (natstest.Wipe) makes a new bucket
// whose sequences start again: a watcher of a cache over the Backend,
// whose upstream watch reported the outage in time but which did not look,
// still reports it before the new bucket's first set. (A watcher of the
// Backend itself is discoverytest's FaultWipeResetsTheWatchersRevisions.)
func TestWipedServerResetsTheWatchersRevisions(t *testing.T) {
	t.Parallel()
	t.Run("cache", func(t *testing.T) {
		t.Parallel()
		var r *cache.Resolver
		wipedServerResets(t, func(t *testing.T, c *nats.Backend) {
			var err error
			if r, err = cache.New(c, cache.WithRetry(fastRetry), cache.WithLogger(testlog.New(t))); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
		}, func(*nats.Backend) discovery.Resolver { return r })
	})
}

// wipedServerResets is TestWipedServerResetsTheWatchersRevisions, through
// the resolver that via returns for the Backend (made by setup).
func wipedServerResets(t *testing.T, setup func(*testing.T, *nats.Backend), via func(*nats.Backend) discovery.Resolver) {
	srv := natstest.Start(t)
	a := newBackend(t, testConfig(t, srv.URL(), "roster"))
	c := newBackend(t, testConfig(t, srv.URL(), "roster"))
	setup(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), revisionWait)
	defer cancel()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	if err := a.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	padSequences(ctx, t, rawJSOf(t, srv.URL()))
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	if err := a.Register(ctx, p2); err != nil {
		t.Fatal(err)
	}
	rw, before, other := firstRevision(ctx, t, via(c), "p-1 p-2")

	natstest.Wipe(t, srv)
	// The watcher does not look until both keys are back in the new
	// bucket and a new instance has come.
	waitPublished(ctx, t, rawJSOf(t, srv.URL()), p1, p2)
	p3 := discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.3:80"}
	if err := a.Register(ctx, p3); err != nil {
		t.Fatal(err)
	}
	caughtUp(ctx, t, other, []discovery.Instance{p1, p2, p3})
	revisiontest.NewHistory(ctx, t, rw, before, []discovery.Instance{p1, p2, p3})
}

// A server restored from a backup keeps its bucket (the same stream,
// created at the same time) but goes back to the sequences of the backup:
// a watcher that did not look during the outage still reports it before
// the restored history's lower revisions.
func TestRestoredBackupResetsTheWatchersRevisions(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	a := newBackend(t, testConfig(t, srv.URL(), "roster"))
	c := newBackend(t, testConfig(t, srv.URL(), "roster"))
	ctx, cancel := context.WithTimeout(t.Context(), revisionWait)
	defer cancel()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	if err := a.Register(ctx, p1); err != nil {
		t.Fatal(err)
	}
	backup := natstest.TakeBackup(t, srv)
	padSequences(ctx, t, rawJSOf(t, srv.URL()))
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	if err := a.Register(ctx, p2); err != nil {
		t.Fatal(err)
	}
	rw, before, other := firstRevision(ctx, t, c, "p-1 p-2")

	natstest.RestoreBackup(t, srv, backup)
	// The watcher does not look until p-2, which the backup lacks, is
	// back and a new instance has come.
	waitPublished(ctx, t, rawJSOf(t, srv.URL()), p2)
	p3 := discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.3:80"}
	if err := a.Register(ctx, p3); err != nil {
		t.Fatal(err)
	}
	caughtUp(ctx, t, other, []discovery.Instance{p1, p2, p3})
	revisiontest.NewHistory(ctx, t, rw, before, []discovery.Instance{p1, p2, p3})
}

// recordingCC is the gRPC side of a resolver: it records the addresses it
// is given.
type recordingCC struct {
	resolver.ClientConn // not used by the resolver otherwise

	mu    sync.Mutex
	addrs [][]string
}

func (cc *recordingCC) UpdateState(s resolver.State) error {
	var got []string
	for _, a := range s.Addresses {
		got = append(got, a.Addr)
	}
	slices.Sort(got)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.addrs = append(cc.addrs, got)
	return nil
}

func (cc *recordingCC) ReportError(error) {}

// last returns the last addresses given, joined.
func (cc *recordingCC) last() string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.addrs) == 0 {
		return ""
	}
	return strings.Join(cc.addrs[len(cc.addrs)-1], " ")
}

func (cc *recordingCC) history() [][]string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return slices.Clone(cc.addrs)
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(revisionWait):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// gRPC's addresses over NATS never go back (#20 item 8): after an
// outage the watch's first set is late; meanwhile s4 comes, s2 leaves, and
// the Resolve that gRPC's ResolveNow forces gives the newer set. The
// watch's older set, arriving afterwards, must not replace it.
func TestGRPCAddressesNeverGoBackOverNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	servers := newBackend(t, testConfig(t, srv.URL(), "roster"))
	client := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	ctx, cancel := context.WithTimeout(t.Context(), 4*revisionWait)
	defer cancel()
	inst := func(n int) discovery.Instance {
		return discovery.Instance{Service: "greeter", ID: fmt.Sprint("s", n), Address: fmt.Sprint("10.0.0.", n, ":80")}
	}
	for _, n := range []int{1, 2} {
		if err := servers.Register(ctx, inst(n)); err != nil {
			t.Fatal(err)
		}
	}
	held := heldresolver.New(client)
	builder, err := grpcresolver.NewBuilder(held, grpcresolver.WithRetry(fastRetry), grpcresolver.WithResolveNowInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	cc := &recordingCC{}
	r, err := builder.Build(resolver.Target{URL: *mustParseURL(t, "roster:///greeter")}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	testwait.Until(t, revisionWait, "gRPC to get s1 and s2", func() bool { return cc.last() == "10.0.0.1:80 10.0.0.2:80" })

	// An outage of the client's link; s3 registers meanwhile.
	proxy.Reject()
	waitFor(t, held.Outage, "the watch to report the outage")
	if err := servers.Register(ctx, inst(3)); err != nil {
		t.Fatal(err)
	}
	held.Armed.Store(true)
	proxy.Accept()
	waitFor(t, held.Held, "the watch's first set after the outage") // [s1 s2 s3], held

	// s4 comes, s2 leaves; gRPC asks ResolveNow, whose Resolve gives
	// [s1 s3 s4].
	if err := servers.Register(ctx, inst(4)); err != nil {
		t.Fatal(err)
	}
	if err := servers.Deregister(ctx, inst(2)); err != nil {
		t.Fatal(err)
	}
	newer := "10.0.0.1:80 10.0.0.3:80 10.0.0.4:80"
	r.ResolveNow(resolver.ResolveNowOptions{})
	testwait.Until(t, revisionWait, "the forced Resolve's [s1 s3 s4] to reach gRPC", func() bool { return cc.last() == newer })

	// The watch's older set arrives now.
	close(held.Release)
	waitFor(t, held.Resumed, "the resolver to handle the watch's older set")
	history := cc.history()
	t.Logf("gRPC was given %v", history)
	i := slices.IndexFunc(history, func(a []string) bool { return strings.Join(a, " ") == newer })
	for _, a := range history[i+1:] {
		if got := strings.Join(a, " "); got != newer {
			t.Errorf("gRPC's addresses went back to [%s] after [%s]", got, newer)
		}
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
