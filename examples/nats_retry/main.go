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
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/embedded"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "nats_retry:", err)
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
	pause     time.Duration
	outage    time.Duration
	scenario  string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("nats_retry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoints, "endpoints", "", "comma-separated NATS URLs; empty starts an embedded NATS and stages the outage")
	fs.StringVar(&o.service, "service", "demo", "service name to register")
	fs.StringVar(&o.node, "node", "localhost:50000", "address of the node to register")
	fs.DurationVar(&o.ttl, "ttl", 3*time.Second, "the node's TTL (whole seconds)")
	fs.DurationVar(&o.retry, "retry", time.Second, "first retry delay; it doubles on every failed attempt, up to 30s")
	fs.DurationVar(&o.timeout, "timeout", time.Second, "NATS dial and request timeout")
	fs.DurationVar(&o.pause, "pause", 5*time.Second, "embedded NATS: how long to run normally before the outage")
	fs.DurationVar(&o.outage, "outage", 8*time.Second, "embedded NATS: how long the outage lasts (longer than -ttl expires the key)")
	fs.StringVar(&o.scenario, "scenario", "cut", `embedded NATS: "cut" cuts the network to a running NATS, which expires the key; "restart" stops and restarts NATS`)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.retry <= 0 || o.timeout <= 0 || o.pause < 0 || o.outage < 0 {
		return o, errors.New("-retry and -timeout must be positive; -pause and -outage must not be negative")
	}
	if o.scenario != "cut" && o.scenario != "restart" {
		return o, fmt.Errorf(`-scenario is %q; want "cut" or "restart"`, o.scenario)
	}
	return o, nil
}

// run is the whole program: it returns when ctx ends (Ctrl+C), after
// removing the node, or on a setup error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	out := &narrator{w: stdout}
	logger := hclog.New(&hclog.LoggerOptions{Output: stderr, DisableTime: true, Level: hclog.Info})

	var (
		srv   *embedded.Server
		proxy *embedded.Proxy // between the backend and NATS, with -scenario cut
	)
	var endpoints []string
	for _, ep := range strings.Split(o.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			endpoints = append(endpoints, ep)
		}
	}
	if len(endpoints) == 0 {
		out.say("Starting an embedded NATS with JetStream (nothing to install; -endpoints uses your own)")
		if srv, err = embedded.New(); err != nil {
			return err
		}
		defer srv.Close()
		endpoints = []string{srv.URL()}
		if o.scenario == "cut" {
			if proxy, err = embedded.NewProxy(srv.Addr()); err != nil {
				return err
			}
			defer proxy.Close()
			endpoints = []string{"nats://" + proxy.Endpoint()}
		}
	}

	// The one line that differs from examples/etcd_retry.
	backend, err := nats.New(nats.Config{
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

	// The goroutines below end when bg ends, before run returns.
	bg, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBg()
	registered := make(chan struct{}, 1)
	sub := backend.SubscribeStatus()
	defer sub.Stop()
	wg.Go(func() { narrateStatus(bg, sub, out, registered) })

	node := discovery.Instance{Service: o.service, Address: o.node}
	if err := backend.Register(ctx, node); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted before NATS answered
		}
		return err
	}
	w, err := backend.Watch(ctx, o.service)
	if err != nil {
		return err
	}
	defer w.Stop()
	wg.Go(func() { follow(bg, w, out) })

	if srv != nil {
		wait(ctx, o.pause)
		drain(registered)
		if proxy != nil {
			out.say(">>> Cutting the network to NATS for %v; NATS keeps running and expires the node's %v key", o.outage, o.ttl)
			proxy.Blackhole()
		} else {
			out.say(">>> Stopping NATS for %v, longer than the %v TTL, to show the retries", o.outage, o.ttl)
			srv.Stop()
		}
		wait(ctx, o.outage)
		if ctx.Err() == nil {
			if proxy != nil {
				out.say(">>> Restoring the network")
				proxy.Unblackhole()
			} else {
				out.say(">>> Starting NATS again")
				if err := srv.Restart(); err != nil {
					return err
				}
			}
			select {
			case <-registered:
				out.say("That was the whole story. Press Ctrl+C to remove the node and exit.")
			case <-ctx.Done():
			}
		}
	} else {
		out.say("Cut or stop NATS for longer than %v, then bring it back, to watch the retries. Press Ctrl+C to exit.", o.ttl)
	}
	<-ctx.Done()

	out.say("Interrupted: removing the node")
	stopBg()
	wg.Wait()
	if err := backend.Close(); err != nil {
		out.say("Could not remove the node (%v): it leaves NATS when its %v TTL runs out. Bye.", err, o.ttl)
		return nil
	}
	out.say("Node %s has left NATS. Bye.", o.node)
	return nil
}

// narrateStatus prints the registration's main state changes and signals
// registered each time the node is registered again.
func narrateStatus(ctx context.Context, sub discovery.StatusSubscription, out *narrator, registered chan<- struct{}) {
	first, lost := true, false
	for {
		st, err := sub.Next(ctx)
		if err != nil {
			return
		}
		switch st.State {
		case discovery.StateRegistered:
			switch {
			case first:
				out.say("Registered node %s; the backend renews its key every third of the TTL", st.Instance.Address)
			case lost:
				out.say("Registered node %s again: NATS had expired its key, and the backend wrote it again", st.Instance.Address)
			default:
				out.say("Registered node %s again: its key outlived the outage and the renewals went on", st.Instance.Address)
			}
			if !first {
				select {
				case registered <- struct{}{}:
				default:
				}
			}
			first, lost = false, false
		case discovery.StateRetrying:
			out.say("Retrying in %v (attempt %d): %v", st.RetryIn, st.Attempt, st.Err)
		case discovery.StateLost:
			lost = true
			out.say("NATS no longer holds node %s (%v); restoring it", st.Instance.Address, st.Err)
		}
	}
}

// follow prints the watched set's size as it changes.
func follow(ctx context.Context, w discovery.Watcher, out *narrator) {
	for {
		set, err := w.Next(ctx)
		switch {
		case errors.Is(err, discovery.ErrUnavailable):
			out.say("Watch: NATS is unreachable; keeping the last known set")
			continue
		case err != nil:
			return // stopped
		}
		out.say("Watch: tracking %d node(s)", len(set))
	}
}

// wait waits d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
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
