package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/linebuf"
)

// Renewals are paced by bytes as well as count: over a link too narrow
// for them (256 instances of 8 KiB, 2 MiB a pass, where the link carries
// about 0.7 MiB a second), a pass never queues so much ahead of the
// client's PINGs that the connection is declared stale and dropped. With
// 256 renewals in flight whatever their size, the connection was lost in
// every run; paced, never. The link cannot carry a renewal of every key
// each TTL, so keys do expire here: TestRenewalsOverASlowLinkKeepEveryKey
// asserts that every key stays where the link can carry them.
func TestRenewalsOverANarrowLinkKeepTheConnection(t *testing.T) {
	t.Parallel()
	const n = 256
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	logs := &linebuf.Buffer{}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	b := newBackend(t, cfg)
	meta := map[string]string{"blob": strings.Repeat("x", 8192)}
	for i := range n {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%03d", i), Address: fmt.Sprintf("10.0.%d.%d:80", i/200, i%200+1), Metadata: meta}
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	kv := rawKV(t, srv.URL(), "roster")
	proxy.SetLatency(50 * time.Millisecond)
	defer proxy.SetLatency(0)
	lastSeq := func() uint64 {
		st, err := kv.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	seq0, start := lastSeq(), time.Now()
	fewest := n
	for time.Since(start) < 2*cfg.TTL {
		count := 0
		for i := range n {
			_, err := kv.Get(context.Background(), fmt.Sprintf("payments.p-%03d", i))
			switch {
			case err == nil:
				count++
			case !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Fatal(err)
			}
		}
		fewest = min(fewest, count)
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	writes := lastSeq() - seq0
	t.Logf("%d renewals of %d-byte instances in %v over the slow link: %.0f renewals/s, %.0f KiB/s; as few as %d of %d keys present",
		writes, len(meta["blob"]), took.Round(time.Millisecond), float64(writes)/took.Seconds(), float64(writes)*float64(len(meta["blob"]))/1024/took.Seconds(), fewest, n)
	if lost := strings.Count(logs.String(), "cannot reach NATS"); lost != 0 {
		t.Errorf("the connection was lost %d times over two TTLs of renewals on a slow link; want none\n%s", lost, logs)
	}
}

// A link silent for as long as the TTL (a stalled process or a loaded
// machine delays PONGs just so) does not cost the connection: the client
// declares it stale only after about two TTLs without a PONG. The key may
// expire meanwhile; the connection, and so the watches, stay.
func TestSilenceOfOneTTLKeepsTheConnection(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	logs := &linebuf.Buffer{}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	b := newBackend(t, cfg)
	if err := b.Register(t.Context(), p1); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole()
	time.Sleep(cfg.TTL) // the fault itself: a silence of one TTL
	proxy.Unblackhole()
	waitState(t, b, p1.Key(), discovery.StateRegistered, 3*cfg.TTL)
	if lost := strings.Count(logs.String(), "cannot reach NATS"); lost != 0 {
		t.Errorf("the connection was lost %d times after a silence of one TTL; want none\n%s", lost, logs)
	}
}

// The renewal byte window is safe down to slow links: over a link four
// times slower than TestRenewalsOverANarrowLinkKeepTheConnection's (the
// proxy relays 32 KiB per 200 ms each way, about 160 KiB/s), a PING waits
// behind at most renewBytes (128 KiB, four of the proxy's chunks, about
// 0.8 s) plus its own round trip, well within the five pings a third of
// the TTL apart (3.3 s here) after which the client declares the link
// stale. A window of 1 MiB lost the connection here; see keeper.go's
// renewBytes for the bound.
func TestRenewalWindowKeepsTheConnectionOnASlowerLink(t *testing.T) {
	t.Parallel()
	const n = 128
	srv := natstest.Start(t)
	proxy := natstest.StartProxy(t, srv.Addr())
	cfg := testConfig(t, "nats://"+proxy.Endpoint(), "roster")
	logs := &linebuf.Buffer{}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	b := newBackend(t, cfg)
	meta := map[string]string{"blob": strings.Repeat("x", 8192)}
	for i := range n {
		in := discovery.Instance{Service: "payments", ID: fmt.Sprintf("p-%03d", i), Address: fmt.Sprintf("10.0.0.%d:80", i+1), Metadata: meta}
		if err := b.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	proxy.SetLatency(200 * time.Millisecond)
	defer proxy.SetLatency(0)
	// Two TTLs: every renewal pass (1 MiB, about 6 s on this link) runs
	// back to back meanwhile, and the client's stale check looks six times.
	start := time.Now()
	for time.Since(start) < 2*cfg.TTL {
		if strings.Contains(logs.String(), "cannot reach NATS") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lost := strings.Count(logs.String(), "cannot reach NATS"); lost != 0 {
		t.Errorf("the connection was lost %d times in two TTLs of renewals over a 160 KiB/s link; want none\n%s", lost, logs)
	}
}
