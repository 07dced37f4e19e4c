package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "etcd_retry:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	endpoints string
	service   string
	node      string
	ttl       time.Duration
	retry     time.Duration
	timeout   time.Duration
	report    time.Duration
	pause     time.Duration
	outage    time.Duration
	scenario  string
	cycles    int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("etcd_retry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoints, "endpoints", "", "comma-separated etcd endpoints; empty starts an embedded etcd and stages the outage")
	fs.StringVar(&o.service, "service", "demo", "service name to register")
	fs.StringVar(&o.node, "node", "localhost:50000", "address of the node to register")
	fs.DurationVar(&o.ttl, "ttl", 5*time.Second, "lease TTL (whole seconds)")
	fs.DurationVar(&o.retry, "retry", time.Second, "first retry delay; it doubles on every failed attempt, up to 30s")
	fs.DurationVar(&o.timeout, "timeout", time.Second, "etcd dial and request timeout")
	fs.DurationVar(&o.report, "report", 3*time.Second, "how often to print the number of tracked nodes")
	fs.DurationVar(&o.pause, "pause", 6*time.Second, "embedded etcd: how long to run normally before each outage")
	fs.DurationVar(&o.outage, "outage", 12*time.Second, "embedded etcd: how long each outage lasts (longer than -ttl shows the retries)")
	fs.IntVar(&o.cycles, "cycles", 1, "embedded etcd: how many outages to stage")
	fs.StringVar(&o.scenario, "scenario", "restart", `embedded etcd: "restart" stops and restarts etcd; "cut" cuts the network to a running etcd, which then expires the lease`)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for name, d := range map[string]time.Duration{"report": o.report, "retry": o.retry, "timeout": o.timeout} {
		if d <= 0 {
			return o, fmt.Errorf("-%s is %v; want a positive duration", name, d)
		}
	}
	if o.scenario != "restart" && o.scenario != "cut" {
		return o, fmt.Errorf(`-scenario is %q; want "restart" or "cut"`, o.scenario)
	}
	if o.pause < 0 || o.outage < 0 || o.cycles < 0 {
		return o, errors.New("-pause, -outage and -cycles must not be negative")
	}
	return o, nil
}

// run is the whole program: it returns when ctx ends (Ctrl+C), after
// revoking the lease, or on a setup error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	out := &narrator{w: stdout}
	logger := hclog.New(&hclog.LoggerOptions{Output: stderr, DisableTime: true, Level: hclog.Info})

	var (
		srv   *embedded.Server
		proxy *embedded.Proxy // between the backend and etcd, with -scenario cut
	)
	endpoints := splitList(o.endpoints)
	if len(endpoints) == 0 {
		out.say("Starting an embedded etcd (nothing to install; -endpoints uses your own)")
		if srv, err = embedded.New(); err != nil {
			return err
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
		if o.scenario == "cut" {
			if proxy, err = embedded.NewProxy(endpoints[0]); err != nil {
				return err
			}
			defer proxy.Close()
			endpoints = []string{proxy.Endpoint()}
		}
	}

	backend, err := etcd.New(etcd.Config{
		Endpoints:      endpoints,
		TTL:            o.ttl,
		Retry:          retry.Policy{Base: o.retry, Max: 30 * time.Second}, // no jitter: round delays read better
		DialTimeout:    o.timeout,
		RequestTimeout: o.timeout,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	defer backend.Close() // on setup errors; the normal path closes it below

	pingCtx, cancel := context.WithTimeout(ctx, max(o.timeout, 2*time.Second))
	_, err = backend.Resolve(pingCtx, o.service)
	cancel()
	if err != nil {
		out.say("etcd at %s does not answer yet (%v); registering anyway, the backend retries", strings.Join(endpoints, ","), err)
	} else {
		out.say("Connected to etcd at %s", strings.Join(endpoints, ","))
	}

	// The goroutines below end when bg ends, before run returns.
	bg, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBg()
	registered := make(chan struct{}, 1)
	sub := backend.SubscribeStatus()
	defer sub.Stop()
	wg.Go(func() { narrateStatus(bg, sub, backend, out, registered) })

	node := discovery.Instance{Service: o.service, Address: o.node}
	if err := backend.Register(ctx, node); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted before etcd answered
		}
		return err
	}

	var tracked atomic.Int64
	w, err := backend.Watch(ctx, o.service)
	if err != nil {
		return err
	}
	defer w.Stop()
	set, err := w.Next(ctx) // the first call returns the current set
	if err != nil && ctx.Err() == nil && !errors.Is(err, discovery.ErrUnavailable) {
		return err
	}
	tracked.Store(int64(len(set)))
	wg.Go(func() { follow(bg, w, &tracked, out) })

	s := &script{ctx: ctx, out: out, tracked: &tracked, tick: time.NewTicker(o.report)}
	defer s.tick.Stop()
	s.report()
	if srv != nil {
		for c := 1; c <= o.cycles && ctx.Err() == nil; c++ {
			s.wait(o.pause)
			if ctx.Err() != nil {
				break
			}
			drain(registered)
			if proxy != nil {
				out.say(">>> Cutting the network to etcd for %v; etcd keeps running and expires the %v lease", o.outage, o.ttl)
				proxy.Blackhole()
			} else {
				out.say(">>> Stopping etcd for %v, longer than the %v lease TTL, to show the retries", o.outage, o.ttl)
				if err := srv.Stop(); err != nil {
					return err
				}
			}
			s.wait(o.outage)
			if ctx.Err() != nil {
				break
			}
			if proxy != nil {
				out.say(">>> Restoring the network")
				proxy.Unblackhole()
			} else {
				out.say(">>> Starting etcd again")
				if err := srv.Restart(); err != nil {
					return err
				}
			}
			s.waitFor(registered)
		}
		if ctx.Err() == nil {
			out.say("That was the whole story. Press Ctrl+C to revoke the lease and exit.")
		}
	} else {
		out.say("Stop etcd for longer than %v, then start it again, to watch the retries. Press Ctrl+C to exit.", o.ttl)
	}
	s.wait(-1) // until Ctrl+C

	out.say("Interrupted: revoking the lease")
	stopBg()
	wg.Wait()
	if err := backend.Close(); err != nil {
		out.say("Could not revoke the lease (%v): node %s leaves etcd when its %v lease expires. Bye.", err, o.node, o.ttl)
		return nil
	}
	out.say("Node %s has left etcd. Bye.", o.node)
	return nil
}

// narrateStatus prints the registration's main state changes and signals
// registered each time the node is registered.
func narrateStatus(ctx context.Context, sub discovery.StatusSubscription, backend *etcd.Backend, out *narrator, registered chan<- struct{}) {
	var (
		first = true
		lost  bool // etcd dropped the node since it was last registered
	)
	for {
		st, err := sub.Next(ctx)
		if err != nil {
			return
		}
		switch st.State {
		case discovery.StateRegistered:
			lease := backend.Lease()
			switch {
			case first:
				out.say("Registered node %s with lease ID %x", st.Instance.Address, int64(lease))
			case lost:
				out.say("Registered node %s again with lease ID %x: etcd had expired the lease and dropped the node; the backend had the lease granted again, under the same ID, and put the node back", st.Instance.Address, int64(lease))
			default:
				out.say("Registered node %s again with lease ID %x: the same lease, kept through etcd's restart, and the node never left", st.Instance.Address, int64(lease))
			}
			first, lost = false, false
			select {
			case registered <- struct{}{}:
			default:
			}
		case discovery.StateLost:
			lost = true
			out.say("etcd no longer holds node %s (%v); restoring it", st.Instance.Address, st.Err)
		}
	}
}

// follow keeps tracked up to date with the watched set.
func follow(ctx context.Context, w discovery.Watcher, tracked *atomic.Int64, out *narrator) {
	unavailable := false
	for {
		set, err := w.Next(ctx)
		switch {
		case errors.Is(err, discovery.ErrUnavailable):
			unavailable = true
			out.say("Watch: etcd is unreachable; keeping the last known %d node(s)", tracked.Load())
			continue
		case err != nil:
			return // stopped
		}
		n := int64(len(set))
		switch old := tracked.Swap(n); {
		case unavailable:
			out.say("Watch: etcd is back; tracking %d node(s)", n)
		case old != n:
			out.say("Watch: now tracking %d node(s)", n)
		}
		unavailable = false
	}
}

// script paces the staged story and prints the tracked count on every
// tick.
type script struct {
	ctx     context.Context
	out     *narrator
	tracked *atomic.Int64
	tick    *time.Ticker
}

// wait waits d (forever if d < 0) or until the context ends.
func (s *script) wait(d time.Duration) {
	var done <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		done = t.C
	}
	s.waitOn(done)
}

// waitFor waits for a value on ch or until the context ends.
func (s *script) waitFor(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
			return
		case <-s.ctx.Done():
			return
		case <-s.tick.C:
			s.report()
		}
	}
}

func (s *script) waitOn(done <-chan time.Time) {
	for {
		select {
		case <-done:
			return
		case <-s.ctx.Done():
			return
		case <-s.tick.C:
			s.report()
		}
	}
}

func (s *script) report() {
	s.out.say("Currently tracking %d node(s)", s.tracked.Load())
}

// narrator prints whole lines from several goroutines.
type narrator struct {
	mu sync.Mutex
	w  io.Writer
}

func (n *narrator) say(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fmt.Fprintf(n.w, format+"\n", args...)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
