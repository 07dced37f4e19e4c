package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/internal/webui"
)

// etcdWatchers returns the number of watches the etcd servers in this
// process serve (etcd registers its metrics globally).
func etcdWatchers(t *testing.T) int {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == "etcd_debugging_mvcc_watcher_total" {
			for _, m := range f.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return int(sum)
}

// writeFleet writes one instance for each of services services (svc-0000,
// svc-0001...), held by leases leases of ttl that one client keeps alive,
// as that many roster processes would (each holds one lease for all its
// instances). The leases are revoked when the test ends.
func writeFleet(t *testing.T, cli *clientv3.Client, services, leases int, ttl time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ids := make([]clientv3.LeaseID, leases)
	var kept sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		kept.Wait()
	})
	for i := range ids {
		g, err := cli.Grant(ctx, int64(ttl/time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = g.ID
		ch, err := cli.KeepAlive(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		kept.Go(func() {
			for range ch {
			}
		})
	}
	// Written 100 keys a transaction (etcd takes 128 at most).
	for from := 0; from < services; from += 100 {
		var ops []clientv3.Op
		for i := from; i < min(from+100, services); i++ {
			in := discovery.Instance{Service: fmt.Sprintf("svc-%04d", i), ID: "i-1", Address: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250)}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(etcd.DefaultPrefix+"/"+in.Service+"/"+in.ID, string(b), clientv3.WithLease(ids[i%leases])))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// pageModel is what the page knows, from the events as app.js reads them.
type pageModel struct {
	services map[string][]struct {
		ID    string
		Lease string
	}
	leases map[string]time.Time // lease -> when its countdown reaches 0
}

func (p *pageModel) apply(t *testing.T, event, data string) {
	t.Helper()
	var msg struct {
		Services []struct {
			Name      string
			Instances []struct {
				ID    string
				Lease string
			}
		}
		Leases map[string]*struct {
			TTLMillis int64 `json:"ttl_ms"`
			Expired   bool
		}
	}
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		t.Fatalf("event %s: %v", event, err)
	}
	now := time.Now()
	if event == "state" {
		p.services = map[string][]struct{ ID, Lease string }{}
		p.leases = map[string]time.Time{}
	}
	for _, s := range msg.Services {
		if len(s.Instances) == 0 {
			delete(p.services, s.Name)
		} else {
			p.services[s.Name] = s.Instances
		}
	}
	for id, l := range msg.Leases {
		switch {
		case l == nil:
			delete(p.leases, id)
		case l.Expired:
			p.leases[id] = now.Add(-time.Hour)
		default:
			p.leases[id] = now.Add(time.Duration(l.TTLMillis) * time.Millisecond)
		}
	}
}

// TestUIAtScale: the web view on etcd with 200 and with 3 000 services,
// kept by 200 leases (processes) of 15 s renewed every 5 s, as one
// browser reads it: it opens one etcd watch whatever the number of
// services; once every lease has been read, no live lease's TTL counts
// down to 0 on the page before it is read again (it would show "not read
// recently"; before, live leases read "expired"); the bytes sent to the
// browser per second are stated and bounded. Not parallel: it counts the
// watches of every etcd server in the process.
func TestUIAtScale(t *testing.T) {
	const (
		leases = 200
		ttl    = 15 * time.Second // renewed every 5 s by the client, as roster renews its leases
		window = 6 * time.Second
	)
	for _, n := range []int{200, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			srv := etcdtest.Start(t)
			writeFleet(t, etcdtest.Client(t, srv), n, leases, ttl)
			b, err := etcd.New(etcd.Config{Endpoints: srv.Endpoints(), Logger: testlog.New(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			watchersBefore := etcdWatchers(t)
			h, err := webui.New(b, webui.WithLogger(testlog.New(t)))
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(h)
			defer hs.Close()
			defer h.Close() // first: it ends the stream

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opened := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/events", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			type line struct {
				text string
				at   time.Time
			}
			lines := make(chan line, 1024)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(nil, 64<<20)
				for sc.Scan() {
					lines <- line{sc.Text(), time.Now()}
				}
			}()

			var p pageModel
			allRead := func() bool {
				if len(p.services) != n {
					return false
				}
				for _, set := range p.services {
					if _, ok := p.leases[set[0].Lease]; !ok {
						return false
					}
				}
				return true
			}
			// lowest returns the least time left the page shows on any
			// instance's lease at now.
			lowest := func(now time.Time) (time.Duration, string) {
				least, which := time.Duration(1<<62), ""
				for name, set := range p.services {
					if d := p.leases[set[0].Lease].Sub(now); d < least {
						least, which = d, name
					}
				}
				return least, which
			}
			var (
				event      string
				windowFrom time.Time
				bytes      int
				leastSeen  = time.Duration(1 << 62)
				leastWhich string
			)
			sample := time.NewTicker(100 * time.Millisecond)
			defer sample.Stop()
			deadline := time.After(waitTimeout + window)
			for windowFrom.IsZero() || time.Since(windowFrom) < window {
				select {
				case <-deadline:
					t.Fatalf("after %v: %d services shown, every lease read: %v", waitTimeout+window, len(p.services), allRead())
				case <-sample.C:
					if !windowFrom.IsZero() {
						if d, which := lowest(time.Now()); d < leastSeen {
							leastSeen, leastWhich = d, which
						}
					}
					continue
				case l, ok := <-lines:
					if !ok {
						t.Fatal("the event stream ended")
					}
					if !windowFrom.IsZero() {
						bytes += len(l.text) + 1
					}
					if v, ok := strings.CutPrefix(l.text, "event: "); ok {
						event = v
					}
					data, ok := strings.CutPrefix(l.text, "data: ")
					if !ok {
						continue
					}
					p.apply(t, event, data)
					if windowFrom.IsZero() && allRead() {
						windowFrom = l.at
						t.Logf("%d services shown, every lease read, %v after the page opened", n, windowFrom.Sub(opened).Round(time.Millisecond))
					}
				}
			}
			perSecond := float64(bytes) / time.Since(windowFrom).Seconds()
			watchers := etcdWatchers(t) - watchersBefore
			t.Logf("%d services, %d leases: %d etcd watches for the view; %.0f bytes/s to one browser over %v; least TTL shown %v (%s)",
				n, leases, watchers, perSecond, window, leastSeen.Round(time.Millisecond), leastWhich)
			if watchers != 1 {
				t.Errorf("the view opened %d etcd watches, want 1 whatever the number of services (before: one per service, %d)", watchers, n+1)
			}
			if leastSeen <= 0 {
				t.Errorf("the page counted a live lease (%s) down to %v before reading it again: it would show it as not read recently", leastWhich, leastSeen)
			}
			// Before: 202 kB/s at 200 services, 3 MB/s at 3 000. Now about
			// one lease reading per renewal.
			if max := 20_000.0; perSecond > max {
				t.Errorf("%.0f bytes/s sent to one browser, want at most %.0f", perSecond, max)
			}
		})
	}
}
