package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
)

// Tests of a registry that comes back different: emptied (a server
// restarted without its JetStream data) or without its bucket (an
// operator's `nats kv rm`).

var differentInstances = []discovery.Instance{
	{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"},
	{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"},
	{Service: "orders", ID: "o-1", Address: "10.0.0.3:80"},
}

// slowRetry is a backoff far longer than the bounds of these tests: only
// the server's return, or the bucket's recreation, can make the Backend
// try again in time.
var slowRetry = retry.Policy{Base: 30 * time.Second, Max: 30 * time.Second}

// differentSetup starts a server, a Backend a holding differentInstances
// (with slowRetry), and a watcher of payments through a second Backend c
// that has seen the first set.
func differentSetup(t *testing.T) (*natstest.Server, *nats.Backend, *nats.Backend, discovery.Watcher) {
	t.Helper()
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.Retry = slowRetry
	a := newBackend(t, cfg)
	c := newBackend(t, cfg)
	for _, in := range differentInstances {
		if err := a.Register(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Watch(t.Context(), "payments")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	if got, err := w.Next(t.Context()); err != nil || len(got) != 2 {
		t.Fatalf("first Next = %v, %v; want p-1 and p-2", got, err)
	}
	return srv, a, c, w
}

// allPresent reports whether kv holds every one of differentInstances,
// each under its key with its value.
func allPresent(ctx context.Context, kv jetstream.KeyValue) bool {
	for _, in := range differentInstances {
		key, _ := nats.KeyOf(in.Key())
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		ok, _ := present(c, kv, key, in)
		cancel()
		if !ok {
			return false
		}
	}
	return true
}

// rawJSOf connects to url as another process would.
func rawJSOf(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// converges waits until w's sets reach exactly p-1, p-2 and p-3.
func converges(t *testing.T, w discovery.Watcher, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var last string
	for {
		got, err := w.Next(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the watcher did not converge on p-1, p-2 and p-3 within %v; last %s", d, last)
		}
		last = fmt.Sprint(got, err)
		if err == nil && len(got) == 3 && got[0].Equal(differentInstances[0]) && got[1].Equal(differentInstances[1]) && got[2].ID == "p-3" {
			return
		}
	}
}

// checkRecovered waits for every key, every status, a watcher and a
// Resolve to show the instances again, within bound of back.
func checkRecovered(t *testing.T, url string, a, c *nats.Backend, w discovery.Watcher, back time.Time, bound time.Duration) {
	t.Helper()
	js := rawJSOf(t, url)
	var kv jetstream.KeyValue
	testwait.Until(t, bound, "every key published again", func() bool {
		if kv == nil {
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			kv, _ = js.KeyValue(ctx, "roster")
			cancel()
			if kv == nil {
				return false
			}
		}
		return allPresent(t.Context(), kv)
	})
	t.Logf("every key published again %v after the server was usable", time.Since(back).Round(time.Millisecond))
	for _, in := range differentInstances {
		waitState(t, a, in.Key(), discovery.StateRegistered, time.Second)
	}
	// The watch follows the new bucket: a new instance reaches it. (Its
	// set may never have shown the gap, if the keys were back before the
	// watch started again: so a change, not the old set, proves it.)
	p3 := discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.4:80"}
	if err := a.Register(t.Context(), p3); err != nil {
		t.Fatal(err)
	}
	converges(t, w, 10*time.Second)
	got, err := c.Resolve(t.Context(), "payments")
	if err != nil || len(got) != 3 {
		t.Errorf("Resolve = %v, %v; want p-1, p-2 and p-3", got, err)
	}
	// The bucket created again has the settings roster needs.
	info, err := js.Stream(t.Context(), "KV_roster")
	if err != nil {
		t.Fatal(err)
	}
	if sc := info.CachedInfo().Config; !sc.AllowMsgTTL || sc.SubjectDeleteMarkerTTL <= 0 || !sc.AllowRollup {
		t.Errorf("bucket created again with AllowMsgTTL %v, SubjectDeleteMarkerTTL %v, AllowRollup %v; want all set",
			sc.AllowMsgTTL, sc.SubjectDeleteMarkerTTL, sc.AllowRollup)
	}
}

// A server restarted without its data (a dev server restarted empty):
// every registration is published again within a bound after the server
// is back, not after the retry policy's next delay, and watchers converge.
func TestWipedServerRegisteredAgainWithinBound(t *testing.T) {
	t.Parallel()
	srv, a, c, w := differentSetup(t)
	natstest.Wipe(t, srv)
	checkRecovered(t, srv.URL(), a, c, w, time.Now(), 4*time.Second)
}

// A bucket deleted while the Backend is connected (`nats kv rm`): it is
// created again and every registration published within about one
// renewal period.
func TestDeletedBucketCreatedAgain(t *testing.T) {
	t.Parallel()
	srv, a, c, w := differentSetup(t)
	js := rawJSOf(t, srv.URL())
	if err := js.DeleteKeyValue(t.Context(), "roster"); err != nil {
		t.Fatal(err)
	}
	checkRecovered(t, srv.URL(), a, c, w, time.Now(), testTTL+4*time.Second)
}
