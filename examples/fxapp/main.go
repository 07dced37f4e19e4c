package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/health"
	"github.com/roster-sd/roster/statushttp"
)

// service is the name every replica registers under.
const service = "hello"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl+C ends the program at once
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fxapp:", err)
		os.Exit(1)
	}
}

// newReplica returns the options of one replica: what a real service's
// main passes to fx.New(...).Run().
func newReplica(name string, cfg fxmodule.Config, etcdCfg etcd.Config, logger hclog.Logger, out *printer, views *views) fx.Option {
	return fx.Options(
		fxmodule.Module,
		// The etcd backend's module: the replica links etcd's client and
		// no other registry's. fxall.Module instead would build the
		// backend that Config.Backend or ROSTER_BACKEND names (etcd, nats
		// or memory), linking every backend's client.
		etcdfx.Module,
		fx.Supply(cfg, etcdCfg),
		fx.Provide(func() hclog.Logger { return logger }),
		fx.Supply(replicaName(name)),
		// The replica's own Prometheus registry: the module registers
		// roster's metrics on it, and the server serves it at /metrics.
		fx.Provide(prometheus.NewRegistry, func(r *prometheus.Registry) prometheus.Registerer { return r }),
		fx.Provide(newServer),
		// The instance is built from the server's address, so fx starts the
		// server before registering and deregisters before stopping it.
		fxmodule.ProvideInstance(func(s *server) discovery.Instance {
			return discovery.Instance{Service: service, ID: name, Address: s.addr}
		}),
		// The instance is published not_ready until GET /healthz answers
		// 2xx, and moves between serving and not_ready with it.
		fx.Provide(func(s *server) health.Check { return health.HTTP("http://" + s.addr + "/healthz") }),
		fx.Supply(out, views),
		fx.Invoke(watchPeers),
		fx.NopLogger,
	)
}

type replicaName string

// server answers GET /hello with its replica's name, and serves the
// replica's metrics at /metrics and its registration status at /status
// (the path its readiness probe would read).
type server struct {
	addr string
	srv  *http.Server
	lis  net.Listener
}

func newServer(lc fx.Lifecycle, name replicaName, reg *prometheus.Registry, status *statushttp.Handler) (*server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s", name)
	})
	// What the registration's health check reads: this process can serve.
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/status", status)
	s := &server{addr: lis.Addr().String(), lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				_ = s.srv.Serve(lis)
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			err := s.srv.Shutdown(ctx)
			<-done
			return err
		},
	})
	return s, nil
}

// watchPeers follows the service's instances while the replica runs and
// prints every change. It starts once the replica's own instance is
// registered, and never blocks the start hook on the registry.
func watchPeers(lc fx.Lifecycle, r discovery.Resolver, reg *fxmodule.Registration, name replicaName, out *printer, views *views) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	lc.Append(fx.StartStopHook(
		func() {
			go func() {
				defer close(done)
				if reg.Wait(ctx) != nil {
					return // stopped first
				}
				w, err := r.Watch(ctx, service)
				if err != nil {
					return // stopped
				}
				defer w.Stop()
				for {
					set, err := w.Next(ctx)
					switch {
					case errors.Is(err, discovery.ErrUnavailable):
						out.say("[%s] registry unreachable; keeping the last known peers", name)
						continue
					case err != nil:
						return // stopped
					}
					out.say("[%s] peers: %s", name, ids(set))
					// Settled once every peer serves: one starting (not
					// ready) or leaving (draining) is still on its way.
					settled := -1
					if routed, _ := discovery.Routable(set); len(routed) == len(set) {
						settled = len(set)
					}
					views.saw(string(name), settled)
				}
			}()
		},
		func() {
			cancel()
			<-done
		}))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fxapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints; empty starts an embedded etcd")
	replicas := fs.Int("replicas", 3, "how many replicas to run")
	once := fs.Bool("once", false, "stop the replicas as soon as they have been called, instead of serving until Ctrl+C")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replicas < 1 || fs.NArg() > 0 {
		return fmt.Errorf("want -replicas of at least 1 and no arguments")
	}
	out := &printer{w: stdout}
	logger := hclog.New(&hclog.LoggerOptions{Output: stderr, DisableTime: true, Level: hclog.Info})

	eps := strings.Split(*endpoints, ",")
	if *endpoints == "" {
		srv, err := embedded.New()
		if err != nil {
			return err
		}
		defer srv.Close()
		eps = srv.Endpoints()
		out.say("Started an embedded etcd at %s", eps[0])
	}
	cfg := fxmodule.Config{
		DrainDelay: 100 * time.Millisecond,
		Health:     fxmodule.HealthConfig{Probe: health.Config{Period: time.Second}},
	}
	etcdCfg := etcd.Config{
		Endpoints: eps,
		Prefix:    "/roster-examples/fxapp",
		TTL:       5 * time.Second,
	}

	// A client's view of the service, to pace the story.
	client, err := etcd.New(etcd.Config{Endpoints: eps, Prefix: etcdCfg.Prefix, Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()
	// The view outlives Ctrl+C (ctx), which starts the replicas' stop.
	view, err := client.Watch(context.WithoutCancel(ctx), service)
	if err != nil {
		return err
	}
	defer view.Stop()
	waitFor := func(ctx context.Context, n int) ([]discovery.Instance, error) {
		for {
			set, err := view.Next(ctx)
			if errors.Is(err, discovery.ErrUnavailable) {
				continue
			}
			if err != nil || len(set) == n {
				return set, err
			}
		}
	}
	if _, err := waitFor(ctx, 0); err != nil {
		return interrupted(ctx, err)
	}

	var apps []*fx.App
	var names []string
	views := &views{seen: make(map[string]int), changed: make(chan struct{})}
	stopAll := func() {
		for _, app := range slices.Backward(apps) {
			stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_ = app.Stop(stopCtx)
			cancel()
		}
		apps = nil
	}
	defer stopAll() // on Ctrl+C and errors

	for i := 1; i <= *replicas; i++ {
		name := fmt.Sprintf("hello-%d", i)
		// Each replica's weight and zone, as ROSTER_WEIGHT and ROSTER_ZONE
		// would give them: hello-2 gets twice hello-1's share of new
		// traffic, and the replicas alternate between two zones.
		rcfg := cfg
		rcfg.Weight, rcfg.Zone = 100*i, []string{"eu-west-1a", "eu-west-1b"}[(i-1)%2]
		app := fx.New(newReplica(name, rcfg, etcdCfg, logger.Named(name), out, views))
		if err := app.Err(); err != nil {
			return err
		}
		if err := app.Start(ctx); err != nil {
			return interrupted(ctx, err)
		}
		apps = append(apps, app)
		out.say("Started %s", name)
		names = append(names, name)
		if err := views.waitAll(ctx, names, i); err != nil {
			return interrupted(ctx, err)
		}
	}

	// Any client can now find and call every replica through the registry.
	set, err := client.Resolve(ctx, service)
	if err != nil {
		return interrupted(ctx, err)
	}
	out.say("Resolved %q: %d instance(s)", service, len(set))
	for _, in := range set {
		out.say("  %s: %s, weight %d, zone %s", in.ID, in.Condition, in.EffectiveWeight(), in.Zone)
	}
	for _, in := range set {
		body, err := get(ctx, "http://"+in.Address+"/hello")
		if err != nil {
			return interrupted(ctx, err)
		}
		out.say("GET %s/hello -> %q", in.ID, body)
	}

	// What a probe and a scrape of hello-1 see.
	first := "http://" + set[0].Address
	code, body, err := getStatus(ctx, first+"/status")
	if err != nil {
		return interrupted(ctx, err)
	}
	out.say("GET %s/status -> %d %s", set[0].ID, code, firstLine(body))
	body, err = get(ctx, first+"/metrics")
	if err != nil {
		return interrupted(ctx, err)
	}
	out.say("GET %s/metrics ->", set[0].ID)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, `roster_registrations{service="hello",state="registered"}`) ||
			strings.HasPrefix(line, "roster_backend_connected ") ||
			strings.HasPrefix(line, "roster_backend_retry_attempts_total ") ||
			strings.HasPrefix(line, "roster_lease_remaining_seconds ") {
			out.say("  %s", line)
		}
	}

	// Serve until Ctrl+C, so that the replicas can be called, scraped and
	// probed by hand.
	if !*once {
		for _, in := range set {
			out.say("%s serves http://%s (/hello, /metrics, /status)", in.ID, in.Address)
		}
		out.say("Press Ctrl+C to stop the replicas")
		<-ctx.Done()
		out.say("Interrupted: stopping the replicas")
	}

	// Stop the replicas one by one: each leaves the registry before its
	// server stops, and the others see it go. After Ctrl+C this still
	// runs, bounded, on a context of its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for len(apps) > 0 {
		app, name := apps[0], names[0]
		apps, names = apps[1:], names[1:]
		stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := app.Stop(stopCtx)
		cancel()
		if err != nil {
			return err
		}
		out.say("Stopped %s", name)
		if err := views.waitAll(ctx, names, len(names)); err != nil {
			return err
		}
	}
	if _, err := waitFor(ctx, 0); err != nil {
		return err
	}
	out.say("All replicas stopped; %q has no instances left", service)
	return nil
}

// interrupted turns an error caused by Ctrl+C into a clean exit.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func get(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Close = true // no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// getStatus GETs a status endpoint: its code and body.
func getStatus(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Close = true // no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func ids(set []discovery.Instance) string {
	if len(set) == 0 {
		return "(none)"
	}
	names := make([]string, len(set))
	for i, in := range set {
		names[i] = in.ID
		if in.Condition != discovery.ConditionServing {
			names[i] += "(" + in.Condition.String() + ")" // such as hello-1(draining) while it stops
		}
	}
	return strings.Join(names, " ")
}

// printer prints whole lines from several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// views records how many peers each replica saw last, all serving (-1
// while one is not ready or draining), so that the story moves on once
// every replica has caught up.
type views struct {
	mu      sync.Mutex
	seen    map[string]int
	changed chan struct{} // closed and replaced on every change
}

func (v *views) saw(name string, n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen[name] = n
	close(v.changed)
	v.changed = make(chan struct{})
}

// waitAll waits until each of names has last seen n peers.
func (v *views) waitAll(ctx context.Context, names []string, n int) error {
	for {
		v.mu.Lock()
		ok := true
		for _, name := range names {
			ok = ok && v.seen[name] == n
		}
		changed := v.changed
		v.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
