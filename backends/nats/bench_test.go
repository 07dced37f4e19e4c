package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/benchtest"
	"github.com/roster-sd/roster/retry"
)

// benchTTL is long enough that no renewal falls inside a latency
// benchmark's timed loop: the latency benchmarks measure single writes,
// not the keeper.
const benchTTL = time.Minute

// benchConfig is testConfig without logs and with benchTTL.
func benchConfig(b *testing.B, endpoint, bucket string) nats.Config {
	cfg := testConfig(b, endpoint, bucket)
	cfg.TTL = benchTTL
	cfg.Logger = hclog.NewNullLogger()
	return cfg
}

func skipShort(b *testing.B) {
	if testing.Short() {
		b.Skip("skipped in -short mode")
	}
}

// benchInstance is an instance with a little metadata, as a service would
// register.
func benchInstance(service, id string) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Address: "127.0.0.1:8080", Metadata: map[string]string{"zone": "a"}}
}

func benchRegister(b *testing.B, backend *nats.Backend, in discovery.Instance) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := backend.Register(ctx, in); err != nil {
		b.Fatalf("Register(%v): %v", in.Key(), err)
	}
}

// rawJetStream is a plain nats.go client on a connection of its own, with
// the client's default settings but unlimited reconnections.
func rawJetStream(b *testing.B, url string) jetstream.JetStream {
	b.Helper()
	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1))
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return js
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkRegister compares Register of a new instance (its key absent)
// with a raw key-value Create of a new key with the same TTL and a value
// of the same size, on a connection of its own to the same server, in the
// same run. Each is undone, untimed, before the next (Deregister, Purge),
// so that the process holds one instance, not b.N. The two alternate which goes first at each iteration so that
// machine noise hits both alike. Metric: register/create, the ratio of
// their mean latencies.
func BenchmarkRegister(b *testing.B) {
	skipShort(b)
	srv := natstest.Start(b)
	cfg := benchConfig(b, srv.URL(), "roster")
	backend := newBackend(b, cfg)
	benchRegister(b, backend, benchInstance("bench", "first"))
	kv := rawKV(b, srv.URL(), "roster")
	value, err := json.Marshal(benchInstance("bench", "i-0"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var createTime, registerTime time.Duration
	create := func(i int) {
		key := fmt.Sprintf("raw.r-%d", i)
		start := time.Now()
		if _, err := kv.Create(ctx, key, value, jetstream.KeyTTL(cfg.TTL)); err != nil {
			b.Fatal(err)
		}
		createTime += time.Since(start)
		// Untimed: keep the bucket's live keys few, as below.
		if err := kv.Purge(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
	register := func(i int) {
		in := benchInstance("bench", fmt.Sprintf("i-%d", i))
		start := time.Now()
		if err := backend.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
		registerTime += time.Since(start)
		// Untimed: a process holds a few instances, not b.N of them,
		// whose renewals (every TTL/3) and subscriptions would load the
		// machine as the run goes on.
		if err := backend.Deregister(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			create(i)
			register(i)
		} else {
			register(i)
			create(i)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(createTime.Nanoseconds())/n, "create-ns/op")
	b.ReportMetric(float64(registerTime.Nanoseconds())/n, "register-ns/op")
	b.ReportMetric(float64(registerTime)/float64(createTime), "register/create")
}

// statusLog follows a Backend's status reports for one key and wakes its
// waiters at each.
type statusLog struct {
	key    discovery.Key
	mu     sync.Mutex
	seen   []discovery.State
	change chan struct{}
}

func followStatus(b *testing.B, r discovery.StatusReporter, key discovery.Key) *statusLog {
	l := &statusLog{key: key, change: make(chan struct{}, 1)}
	sub := r.SubscribeStatus()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			if st.Instance.Key() != key {
				continue
			}
			l.mu.Lock()
			l.seen = append(l.seen, st.State)
			l.mu.Unlock()
			select {
			case l.change <- struct{}{}:
			default:
			}
		}
	}()
	b.Cleanup(func() { sub.Stop(); <-done })
	return l
}

// mark returns how many states have been seen, for since.
func (l *statusLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// since returns the states seen after mark m.
func (l *statusLog) since(m int) []discovery.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen[m:])
}

// wait waits until a state after mark m is want and the last state seen is
// want.
func (l *statusLog) wait(b *testing.B, m int, want discovery.State, d time.Duration) {
	b.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok := len(l.seen) > m && l.seen[len(l.seen)-1] == want
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-l.change:
		case <-deadline.C:
			b.Fatalf("%s: no %v within %v; states since the mark: %v", l.key, want, d, l.since(m))
		}
	}
}

// BenchmarkRecovery stops the server for longer than the TTL (2 s): for
// the outage the variant names plus a random 0 to 2 s. It measures, once
// the server is back with its data, how long the Backend takes to report
// the instance registered again (its key stored by JetStream) and how
// long a raw nats.go client (default settings: reconnection every 2 s)
// that simply retries a key-value Put takes to complete it, in the same
// run. Both reach the server through a proxy. The Backend runs with the
// production ReconnectDelay (250 ms) and the production retry policy
// scaled to the TTL (200 ms doubling to 4 s, where the default is 1 s to
// 30 s for a 15 s TTL). Every iteration is one outage; run it with
// -benchtime Nx for N outages.
//
// nats-server does not expire messages while it is down, and after a
// restart it expires the overdue ones at its first age check, 250 ms or
// more after it starts: a Backend that is back first renews its key in
// time, and the key never disappears. The expired variants make sure the
// key is gone first: the proxy rejects both clients until the server has
// expired the key (a raw watch of the key sees its removal), and the times
// run from the moment the proxy lets them through again.
//
// Metrics: the median and the longest of each (recovery-p50-ms,
// recovery-max-ms, raw-put-p50-ms, raw-put-max-ms) and expired, the share
// of outages after which the Backend found its key gone (reported
// discovery.StateLost) and wrote it again.
func BenchmarkRecovery(b *testing.B) {
	skipShort(b)
	for _, c := range []struct {
		down    time.Duration
		expired bool
	}{{4 * time.Second, false}, {10 * time.Second, false}, {4 * time.Second, true}, {10 * time.Second, true}} {
		name := fmt.Sprintf("outage=%v", c.down)
		if c.expired {
			name += "/expired"
		}
		b.Run(name, func(b *testing.B) { benchRecovery(b, c.down, c.expired) })
	}
}

func benchRecovery(b *testing.B, down time.Duration, waitExpiry bool) {
	srv := natstest.Start(b)
	proxy := natstest.StartProxy(b, srv.Addr())
	url := "nats://" + proxy.Endpoint()
	cfg := testConfig(b, url, "roster")
	cfg.Logger = hclog.NewNullLogger()
	cfg.TTL = 2 * time.Second
	cfg.Retry = retry.Policy{Base: 200 * time.Millisecond, Max: 4 * time.Second}
	cfg.ReconnectDelay, cfg.RequestTimeout = 0, 0 // the defaults
	backend := newBackend(b, cfg)
	in := benchInstance("bench", "p-1")
	states := followStatus(b, backend, in.Key())
	benchRegister(b, backend, in)
	raw, err := rawJetStream(b, url).KeyValue(context.Background(), "roster")
	if err != nil {
		b.Fatal(err)
	}
	rawPut := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := raw.Put(ctx, "raw.p-1", []byte("x"))
		return err
	}
	var recovery, rawTimes []time.Duration
	expired := 0
	for b.Loop() {
		if err := rawPut(); err != nil {
			b.Fatal(err)
		}
		m := states.mark()
		srv.Stop()
		stopped := time.Now()
		if waitExpiry {
			proxy.Reject()
		}
		states.wait(b, m, discovery.StateRetrying, cfg.TTL+5*time.Second)
		// A random extra ends the outage at a random point of the raw
		// client's 2 s reconnection cycle (an outage of a whole number of
		// cycles would always end just before its next attempt).
		time.Sleep(down + rand.N(2*time.Second) - time.Since(stopped))
		m = states.mark()
		if err := srv.Restart(); err != nil {
			b.Fatal(err)
		}
		if waitExpiry {
			waitRemoved(b, srv.URL(), "roster", "bench.p-1")
			proxy.Accept()
		}
		back := time.Now()
		rawDone := make(chan time.Duration, 1)
		go func() {
			// Retry until it lands, as a plain client would.
			for rawPut() != nil {
				time.Sleep(10 * time.Millisecond)
			}
			rawDone <- time.Since(back)
		}()
		states.wait(b, m, discovery.StateRegistered, time.Minute)
		recovery = append(recovery, time.Since(back))
		if slices.Contains(states.since(m), discovery.StateLost) {
			expired++
		}
		select {
		case d := <-rawDone:
			rawTimes = append(rawTimes, d)
		case <-time.After(time.Minute):
			b.Fatal("the raw client's Put did not land within a minute of the restart")
		}
	}
	slices.Sort(recovery)
	slices.Sort(rawTimes)
	b.ReportMetric(ms(recovery[len(recovery)/2]), "recovery-p50-ms")
	b.ReportMetric(ms(recovery[len(recovery)-1]), "recovery-max-ms")
	b.ReportMetric(ms(rawTimes[len(rawTimes)/2]), "raw-put-p50-ms")
	b.ReportMetric(ms(rawTimes[len(rawTimes)-1]), "raw-put-max-ms")
	b.ReportMetric(float64(expired)/float64(len(recovery)), "expired")
}

// waitRemoved waits, through a connection of its own to url, until
// bucket's key holds no value: a watch of the key sees its removal (or
// finds it absent).
func waitRemoved(b *testing.B, url, bucket, key string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := natsgo.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		b.Fatal(err)
	}
	w, err := kv.Watch(ctx, key)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	live := false
	for {
		select {
		case e := <-w.Updates():
			switch {
			case e == nil && !live, e != nil && e.Operation() != jetstream.KeyValuePut:
				return
			case e != nil:
				live = true
			}
		case <-ctx.Done():
			b.Fatalf("the server did not remove %s within 30 s of its restart", key)
		}
	}
}

// BenchmarkWatchPropagation measures how long a change takes to reach a
// Watcher of another Backend, against a raw key-value Put (or Delete)
// reaching a raw key-value Watch, in the same run, on a service of 10
// instances. The writers and the watchers, roster's and raw, each have a
// connection of their own, as separate processes would. Each watcher runs
// on its own goroutine and stamps the moment it sees the change; the time
// runs from the start of the write. Iterations alternate adding the
// instance (Register, Put) and removing it (Deregister, Delete). Metric:
// propagation/raw-watch, the ratio of the mean times (and the others of
// benchtest.Propagation: the times from the write's return, the share of
// changes seen before it).
func BenchmarkWatchPropagation(b *testing.B) {
	skipShort(b)
	srv := natstest.Start(b)
	writer := newBackend(b, benchConfig(b, srv.URL(), "roster"))
	reader := newBackend(b, benchConfig(b, srv.URL(), "roster"))
	for i := range 10 {
		benchRegister(b, writer, benchInstance("bench", fmt.Sprintf("i-%d", i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := reader.Watch(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	if set, err := w.Next(ctx); err != nil || len(set) != 10 {
		b.Fatalf("first Next = %d instances, %v; want 10", len(set), err)
	}
	rosterSeen := benchtest.Sets(ctx, w)

	rawWriter := rawKV(b, srv.URL(), "roster")
	rawWatch, err := rawKV(b, srv.URL(), "roster").Watch(ctx, "raw.*")
	if err != nil {
		b.Fatal(err)
	}
	defer rawWatch.Stop()
	if e := <-rawWatch.Updates(); e != nil {
		b.Fatalf("raw watch: first entry %v; want the end of the (empty) current values", e.Key())
	}
	rawSeen := make(chan benchtest.Seen, 1)
	go func() {
		for e := range rawWatch.Updates() {
			size := 0
			if e.Operation() == jetstream.KeyValuePut {
				size = 1
			}
			select {
			case rawSeen <- benchtest.Seen{At: time.Now(), Size: size}:
			case <-ctx.Done():
				return
			}
		}
	}()

	moving := benchInstance("bench", "moving")
	benchtest.Propagation(ctx, b, 10,
		func(ctx context.Context, add bool) error {
			if add {
				_, err := rawWriter.Put(ctx, "raw.moving", []byte("x"))
				return err
			}
			return rawWriter.Delete(ctx, "raw.moving")
		}, rawSeen,
		func(ctx context.Context, add bool) error {
			if add {
				return writer.Register(ctx, moving)
			}
			return writer.Deregister(ctx, moving)
		}, rosterSeen)
}

// BenchmarkRenewalTraffic counts the renewals a Backend holding 1 and 1000
// instances sends, at a TTL of 3 s, over the same window of two TTLs:
// server side, the messages the server received on the Backend's
// connection (Connz in_msgs: every publish it made, renewals and anything
// else), checked against a raw subscriber to the bucket's subjects
// ($KV.<bucket>.>), which sees what a watcher of every service would
// receive. Metrics: msgs/s and msgs/s/instance for each.
func BenchmarkRenewalTraffic(b *testing.B) {
	skipShort(b)
	srv := natstest.Start(b)
	const ttl = 3 * time.Second
	const window = 2 * ttl
	inMsgs := func(name string) int64 {
		cz, err := srv.NATS().Connz(&server.ConnzOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var sum int64
		for _, c := range cz.Conns {
			if c.Name == name {
				sum += c.InMsgs
			}
		}
		return sum
	}
	rate := func(n int) float64 {
		bucket := fmt.Sprintf("traffic%d", n)
		cfg := benchConfig(b, srv.URL(), bucket)
		cfg.TTL = ttl
		backend, err := nats.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer backend.Close()
		ctx := context.Background()
		for i := range n {
			in := discovery.Instance{Service: fmt.Sprintf("svc-%d", i%10), ID: fmt.Sprintf("i-%04d", i),
				Address: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250)}
			if err := backend.Register(ctx, in); err != nil {
				b.Fatal(err)
			}
		}
		nc, err := natsgo.Connect(srv.URL(), natsgo.Name("bench-subscriber"))
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		var got atomic.Int64
		if _, err := nc.Subscribe("$KV."+bucket+".>", func(*natsgo.Msg) { got.Add(1) }); err != nil {
			b.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
		before, subBefore := inMsgs("roster"), got.Load()
		time.Sleep(window)
		sent, received := inMsgs("roster")-before, got.Load()-subBefore
		b.Logf("%d instances: %d messages from the Backend, %d on $KV.%s.> in %v", n, sent, received, bucket, window)
		if d := sent - received; d < -int64(n) || d > int64(n) {
			b.Errorf("%d instances: the server counts %d messages, the subscriber %d", n, sent, received)
		}
		return float64(sent) / window.Seconds()
	}
	var one, thousand float64
	for b.Loop() {
		one += rate(1)
		thousand += rate(1000)
	}
	one /= float64(b.N)
	thousand /= float64(b.N)
	b.ReportMetric(one, "msgs/s(1)")
	b.ReportMetric(one, "msgs/s/instance(1)")
	b.ReportMetric(thousand, "msgs/s(1000)")
	b.ReportMetric(thousand/1000, "msgs/s/instance(1000)")
}
