package nats_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// rawKV opens bucket through a connection of its own, as another process
// (or an operator with the nats CLI) would.
func rawKV(t testing.TB, url, bucket string) jetstream.KeyValue {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var kv jetstream.KeyValue
	testwait.Until(t, 10*time.Second, "bucket "+bucket+" opens", func() bool {
		kv, err = js.KeyValue(t.Context(), bucket)
		return err == nil
	})
	return kv
}

// present reports whether kv holds key with in as its value.
func present(ctx context.Context, kv jetstream.KeyValue, key string, in discovery.Instance) (bool, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(e.Value()) == mustJSON(in), nil
}

func mustJSON(in discovery.Instance) string {
	return fmt.Sprintf(`{"service":%q,"id":%q,"address":%q}`, in.Service, in.ID, in.Address)
}

// poller reads a key every 20 ms through its own connection and counts
// the reads that succeeded and those that found the key absent.
type poller struct {
	ok, absent atomic.Int64
	stop, done chan struct{}
}

func pollKey(t *testing.T, kv jetstream.KeyValue, key string, in discovery.Instance) *poller {
	p := &poller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			ok, err := present(ctx, kv, key, in)
			cancel()
			if err != nil {
				continue
			}
			p.ok.Add(1)
			if !ok {
				p.absent.Add(1)
				t.Logf("poll at %v: key absent", time.Now().Format("15:04:05.000"))
			}
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *poller) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// states collects the states sub yields for key until stop is called.
type stateLog struct {
	sub  discovery.StatusSubscription
	done chan struct{}
	got  atomic.Pointer[[]discovery.Status]
}

func recordStates(t *testing.T, r discovery.StatusReporter, key discovery.Key) *stateLog {
	l := &stateLog{sub: r.SubscribeStatus(), done: make(chan struct{})}
	l.got.Store(&[]discovery.Status{})
	go func() {
		defer close(l.done)
		for {
			st, err := l.sub.Next(context.Background())
			if err != nil {
				return
			}
			if st.Instance.Key() == key {
				s := append(slices.Clone(*l.got.Load()), st)
				l.got.Store(&s)
			}
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *stateLog) states() []discovery.State {
	var states []discovery.State
	for _, st := range l.statuses() {
		states = append(states, st.State)
	}
	return states
}

func (l *stateLog) statuses() []discovery.Status { return *l.got.Load() }

func (l *stateLog) stop() {
	l.sub.Stop()
	<-l.done
}

func waitState(t *testing.T, b *nats.Backend, key discovery.Key, want discovery.State, d time.Duration) {
	t.Helper()
	testwait.Until(t, d, fmt.Sprintf("%s is %v", key, want), func() bool {
		st, err := b.Status(key.Service, key.ID)
		return err == nil && st.State == want
	})
}

var p1 = discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}

const p1Key = "payments.p-1"

func TestExternalDeleteAndPurgeRestoredWithinHalfASecond(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, srv.URL(), "roster")
	log := recordStates(t, b, p1.Key())
	cases := []struct {
		name   string
		remove func(ctx context.Context) error
	}{
		{"delete", func(ctx context.Context) error { return kv.Delete(ctx, p1Key) }},
		{"purge", func(ctx context.Context) error { return kv.Purge(ctx, p1Key) }},
	}
	for _, tc := range cases {
		if err := tc.remove(t.Context()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		removed := time.Now()
		testwait.Until(t, 500*time.Millisecond, "the key is back after an external "+tc.name, func() bool {
			ok, _ := present(t.Context(), kv, p1Key, p1)
			return ok
		})
		t.Logf("%s: restored in %v", tc.name, time.Since(removed))
		waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
	}
	// The removals went lost (a subscriber may miss a state that lasted a
	// round trip, not every one), with a cause that says the registry
	// dropped the instance.
	lost := 0
	for _, st := range log.statuses() {
		if st.State == discovery.StateLost {
			lost++
			if !errors.Is(st.Err, discovery.ErrRemoved) {
				t.Errorf("lost with cause %v; want it to wrap discovery.ErrRemoved", st.Err)
			}
		}
	}
	if lost == 0 {
		t.Errorf("states %v; want lost among them", log.states())
	}
}

// A key purged while its process is cut off is restored as soon as the
// link is back: the process missed the purge's event, so it renews every
// key on reconnecting rather than at its next renewal (TTL/3 away).
func TestPurgedWhileCutOffRestoredOnReconnect(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	cfg.TTL = time.Minute // renewals 20 s apart
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, srv.URL(), "roster")
	proxy.Reject()
	if err := kv.Purge(t.Context(), p1Key); err != nil {
		t.Fatal(err)
	}
	proxy.Accept()
	back := time.Now()
	testwait.Until(t, 5*time.Second, "the key is back after the reconnection", func() bool {
		ok, _ := present(t.Context(), kv, p1Key, p1)
		return ok
	})
	t.Logf("restored %v after the link came back", time.Since(back))
	waitState(t, b, p1.Key(), discovery.StateRegistered, time.Second)
}

func TestCloseRemovesEveryKeyAtOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b, err := nats.New(testConfig(t, srv.URL(), "roster"))
	if err != nil {
		t.Fatal(err)
	}
	var ins []discovery.Instance
	for i := range 5 {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%d", i), Address: fmt.Sprintf("10.0.0.%d:80", i+1)}
		ins = append(ins, in)
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, srv.URL(), "roster")
	for _, in := range ins {
		if _, err := kv.Get(t.Context(), "payments."+in.ID); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("Get(%s) right after Close = %v; want ErrKeyNotFound", in.ID, err)
		}
	}
}

func TestRegisterDuringAnOutage(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	b := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	proxy.Reject()
	testwait.Until(t, 10*time.Second, "the Backend sees the link down", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := b.Resolve(ctx, "payments")
		return errors.Is(err, discovery.ErrUnavailable)
	})

	// A Register whose context ends during the outage leaves nothing.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := b.Register(ctx, p1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register during an outage, its context ending = %v; want DeadlineExceeded", err)
	}
	if _, err := b.Status(p1.Service, p1.ID); !errors.Is(err, discovery.ErrNotRegistered) {
		t.Errorf("Status after the failed Register = %v; want ErrNotRegistered", err)
	}

	// A Register that waits through the outage completes once the link
	// is back.
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	done := make(chan error, 1)
	go func() { done <- b.Register(t.Context(), p2) }()
	waitState(t, b, p2.Key(), discovery.StateRegistering, 5*time.Second)
	proxy.Accept()
	back := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Register through the outage: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Register did not return within 5s of the link coming back")
	}
	t.Logf("Register returned %v after the link came back", time.Since(back))

	kv := rawKV(t, srv.URL(), "roster")
	if _, err := kv.Get(t.Context(), p1Key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Get(p-1) after its Register failed = %v; want ErrKeyNotFound", err)
	}
	got, err := b.Resolve(t.Context(), "payments")
	if err != nil || len(got) != 1 || !got[0].Equal(p2) {
		t.Errorf("Resolve = %v, %v; want only p-2", got, err)
	}
}

func TestExistingBucketWithoutTTLsIsRejected(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "plain"}); err != nil {
		t.Fatal(err)
	}
	_, err = nats.New(testConfig(t, srv.URL(), "plain"))
	if !errors.Is(err, nats.ErrBucketSettings) {
		t.Fatalf("New on a bucket without per-message TTLs = %v; want ErrBucketSettings", err)
	}
	t.Logf("error: %v", err)
}

// A process cut off from NATS stops renewing: its instance leaves every
// watcher within the TTL plus the server's expiry granularity, and comes
// back as soon as the link does.
func TestCutOffInstanceExpiresThenComesBack(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	a := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	c := newBackend(t, testConfig(t, srv.URL(), "roster"))
	if err := a.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(t.Context(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if got, err := w.Next(ctx); err != nil || len(got) != 1 {
		t.Fatalf("first Next = %v, %v; want [p-1]", got, err)
	}
	proxy.Reject()
	cut := time.Now()
	if got, err := w.Next(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Next after the cut = %v, %v; want the empty set", got, err)
	}
	gone := time.Since(cut)
	t.Logf("instance left the watchers %v after the cut (TTL %v)", gone, testTTL)
	// The last renewal was at most TTL/3 before the cut; the server
	// expires messages about once a second.
	if limit := testTTL + 1500*time.Millisecond; gone > limit {
		t.Errorf("instance left %v after the cut; want within %v", gone, limit)
	}
	proxy.Accept()
	back := time.Now()
	if got, err := w.Next(ctx); err != nil || len(got) != 1 || !got[0].Equal(p1) {
		t.Fatalf("Next after the link is back = %v, %v; want [p-1]", got, err)
	}
	t.Logf("instance back %v after the link", time.Since(back))
	waitState(t, a, p1.Key(), discovery.StateRegistered, time.Second)

	// The key written again is this Backend's: Close removes it at once.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := w.Next(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Next after Close = %v, %v; want the empty set at once", got, err)
	}
}

// Killing the node that leads the bucket's stream in a 3-node cluster
// never leaves the key absent: another node takes over and the renewals go
// on.
func TestClusterStreamLeaderKilled(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	cfg := testConfig(t, c.URLs()[0], "roster")
	cfg.Endpoints = c.URLs()
	cfg.Replicas = 3
	cfg.TTL = 3 * time.Second
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	log := recordStates(t, b, p1.Key())
	kv := rawKV(t, c.URLs()[0], "roster")
	p := pollKey(t, kv, p1Key, p1)
	testwait.Until(t, 5*time.Second, "the poller reads the key", func() bool { return p.ok.Load() > 0 })

	var leader int
	testwait.Until(t, 5*time.Second, "the bucket's stream has a leader", func() bool {
		leader = c.StreamLeader("KV_roster")
		return leader >= 0
	})
	e, err := kv.Get(t.Context(), p1Key)
	if err != nil {
		t.Fatal(err)
	}
	rev := e.Revision()
	c.Nodes()[leader].Stop()
	// Two renewals after the kill prove the Backend goes on through the
	// new leader.
	testwait.Until(t, 10*time.Second, "two renewals after the leader was killed", func() bool {
		e, err := kv.Get(t.Context(), p1Key)
		return err == nil && e.Revision() >= rev+2
	})
	before := p.ok.Load()
	testwait.Until(t, 5*time.Second, "the poller reads the key after the kill", func() bool { return p.ok.Load() > before+5 })
	p.close()
	if n := p.absent.Load(); n != 0 {
		t.Errorf("the key was absent in %d of %d reads; want it present all along", n, p.ok.Load())
	}
	if slices.Contains(log.states(), discovery.StateLost) {
		t.Errorf("states %v; want no %v", log.states(), discovery.StateLost)
	}
	waitState(t, b, p1.Key(), discovery.StateRegistered, 5*time.Second)
}

// When the later writer of a duplicate ID is cut off, its key expires and
// the earlier writer takes it back; once the link is back, the one cut off
// finds the key taken and waits in conflict: one owner at a time, no
// flapping.
func TestDuplicateOwnerCutOffHandsTheKeyBack(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	a := newBackend(t, testConfig(t, srv.URL(), "roster"))
	b := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	pa, pb := p1, p1
	pb.Address = "10.0.0.2:80"
	if err := a.Register(t.Context(), pa); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(t.Context(), pb); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, p1.Key(), discovery.StateConflict, 5*time.Second)

	proxy.Reject()
	cut := time.Now()
	kv := rawKV(t, srv.URL(), "roster")
	// b's key expires within the TTL (plus the server's expiry tick), and
	// a sees it at its next look, at most TTL/3 later.
	testwait.Until(t, testTTL+testTTL/3+2*time.Second, "a holds the key again", func() bool {
		ok, _ := present(t.Context(), kv, p1Key, pa)
		return ok
	})
	t.Logf("a took the key back %v after b was cut off", time.Since(cut))
	waitState(t, a, p1.Key(), discovery.StateRegistered, time.Second)
	aStates := recordStates(t, a, p1.Key())

	proxy.Accept()
	waitState(t, b, p1.Key(), discovery.StateConflict, 5*time.Second)
	// Three renewals of a after b is back: all a's, and a never leaves
	// registered.
	w, err := kv.Watch(t.Context(), p1Key, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	deadline := time.After(10 * time.Second)
	for n := 0; n < 3; {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue
			}
			n++
			if got, want := string(e.Value()), mustJSON(pa); e.Operation() != jetstream.KeyValuePut || got != want {
				t.Errorf("write %v %s; want only a's renewals, %s", e.Operation(), got, want)
			}
		case <-deadline:
			t.Fatal("fewer than 3 renewals of a in 10s")
		}
	}
	for _, st := range aStates.states() {
		if st != discovery.StateRegistered {
			t.Errorf("a's states after b came back = %v; want registered only", aStates.states())
			break
		}
	}
}

// Close does not wait for a Register blocked by an outage: the Register
// returns ErrClosed and Close returns within its removal bound.
func TestCloseDuringAnOutageEndsAWaitingRegister(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	b, err := nats.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	proxy.Reject()
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"}
	done := make(chan error, 1)
	go func() { done <- b.Register(context.Background(), p2) }()
	waitState(t, b, p2.Key(), discovery.StateRegistering, 5*time.Second)
	start := time.Now()
	// p-1 cannot be removed while cut off, and Close says so.
	if err := b.Close(); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("Close while cut off = %v; want an error wrapping ErrUnavailable", err)
	}
	if d := time.Since(start); d > cfg.RequestTimeout+3*time.Second {
		t.Errorf("Close took %v during an outage; want at most about RequestTimeout (%v)", d, cfg.RequestTimeout)
	}
	select {
	case err := <-done:
		if !errors.Is(err, discovery.ErrClosed) {
			t.Errorf("the waiting Register returned %v; want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting Register did not return after Close")
	}
}

// A partition (the proxy holds every byte) longer than the TTL: the
// instance expires for the others, the Backend notices the silent link,
// and once the partition heals the instance is back within a bound.
func TestBlackholeLongerThanTTL(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	// A reconnection into the partition hangs for DialTimeout (the NATS
	// client holds its lock meanwhile, so a request waits that long too).
	cfg.DialTimeout = time.Second
	a := newBackend(t, cfg)
	if err := a.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	kv := rawKV(t, srv.URL(), "roster")
	proxy.Blackhole()
	testwait.Until(t, testTTL+3*time.Second, "the key expires while a is partitioned", func() bool {
		ok, err := present(t.Context(), kv, p1Key, p1)
		return err == nil && !ok
	})
	waitState(t, a, p1.Key(), discovery.StateRetrying, 5*time.Second)
	proxy.Unblackhole()
	healed := time.Now()
	testwait.Until(t, 3*time.Second, "the key is back after the partition", func() bool {
		ok, _ := present(t.Context(), kv, p1Key, p1)
		return ok
	})
	t.Logf("key back %v after the partition healed", time.Since(healed))
	waitState(t, a, p1.Key(), discovery.StateRegistered, 3*time.Second)

	// The key written again is this Backend's: Close removes it at once,
	// whatever the partition held back and delivered late.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := present(t.Context(), kv, p1Key, p1); ok || err != nil {
		t.Fatalf("key present (%v, %v) after Close; want it removed at once", ok, err)
	}
}

// An application may start while NATS is down, as with etcd: New returns
// at once, Register waits through the outage, and the bucket (absent on
// this fresh server) is created and the instance written as soon as NATS
// can be reached; a watch started meanwhile (on another bucket, so that
// only Register can create this one) reports the outage, then the exact
// set.
func TestNewWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	proxy.Reject()

	start := time.Now()
	b := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "roster"))
	if took := time.Since(start); took > time.Second {
		t.Errorf("New took %v with NATS refusing connections; want it to return at once", took)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_, err := b.Resolve(ctx, "payments")
	cancel()
	if !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("Resolve while NATS is down = %v; want ErrUnavailable", err)
	}
	other := newBackend(t, testConfig(t, "nats://"+proxy.Endpoint(), "other"))
	w, err := other.Watch(t.Context(), "payments")
	if err != nil {
		t.Fatalf("Watch while NATS is down: %v", err)
	}
	defer w.Stop()
	wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer wcancel()
	if set, err := w.Next(wctx); !errors.Is(err, discovery.ErrUnavailable) {
		t.Fatalf("first watch update while NATS is down = %v, %v; want ErrUnavailable", set, err)
	}

	done := make(chan error, 1)
	go func() { done <- b.Register(t.Context(), p1) }()
	waitState(t, b, p1.Key(), discovery.StateRegistering, 5*time.Second)
	proxy.Accept()
	back := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Register through the outage: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Register did not return within 5s of NATS becoming reachable")
	}
	t.Logf("Register returned %v after NATS became reachable", time.Since(back))
	kv := rawKV(t, srv.URL(), "roster")
	if ok, err := present(t.Context(), kv, p1Key, p1); !ok || err != nil {
		t.Fatalf("key %s after NATS became reachable: present %v, %v", p1Key, ok, err)
	}

	if err := other.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	for {
		set, err := w.Next(wctx)
		if errors.Is(err, discovery.ErrUnavailable) {
			continue
		}
		if err != nil {
			t.Fatalf("watch after NATS became reachable: %v", err)
		}
		if len(set) == 1 && set[0].Equal(p1) {
			break
		}
	}
}

// Refusals that waiting would not cure fail New at once: here, a server
// that requires credentials the client does not have.
func TestNewFailsOnAuthentication(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithToken("s3cret-token"))
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.Token = "wrong-token"
	b, err := nats.New(cfg)
	if err == nil {
		b.Close()
		t.Fatal("New with a wrong token succeeded; want an authorization error")
	}
	if !errors.Is(err, natsgo.ErrAuthorization) || strings.Contains(err.Error(), "token") && strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("New = %v; want an authorization error that does not show the token", err)
	}
}

// A write of the Backend's own whose reply it never got (here, made
// unseen; in life, a renewal that Close or RequestTimeout cut short) does
// not keep Deregister or Close from removing the key at once.
func TestRemovalOutlivesAnUnseenOwnWrite(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	for _, tc := range []struct {
		name   string
		remove func(b *nats.Backend) error
	}{
		{"Deregister", func(b *nats.Backend) error { return b.Deregister(t.Context(), p1) }},
		{"Close", func(b *nats.Backend) error { return b.Close() }},
	} {
		b := newBackend(t, testConfig(t, srv.URL(), "roster"))
		if err := b.Register(t.Context(), p1); err != nil {
			t.Fatal(err)
		}
		if err := nats.WriteUnseen(t.Context(), b, p1.Key()); err != nil {
			t.Fatal(err)
		}
		kv := rawKV(t, srv.URL(), "roster")
		if err := tc.remove(b); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ok, err := present(t.Context(), kv, p1Key, p1); ok || err != nil {
			t.Errorf("%s: key present (%v, %v) just after; want it removed at once", tc.name, ok, err)
		}
	}
}
