package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/health"
)

type registerFlags struct {
	service, id, address string
	meta                 []string
	http                 string   // --http: where to serve /metrics and /status
	allowHosts           []string // --allow-host: names --http may be reached by
	weight               int
	zone                 string

	// Health-gated registration: at most one check.
	healthHTTP, healthGRPC, healthTCP string
	healthGRPCService                 string
	health                            health.Config
}

func (a *app) registerCmd() *cobra.Command {
	var f registerFlags
	cmd := &cobra.Command{
		Use:   "register --service S --address HOST:PORT [--id I] [--meta k=v ...] [--ttl 15s]",
		Short: "Register an instance and keep it registered until Ctrl+C",
		Long: `register publishes one instance, as a service would, and keeps it registered
until Ctrl+C or SIGTERM: through etcd restarts and outages, and restoring it
if someone deletes it. It prints every change of the registration's state:

  registered payments/p-1 at 127.0.0.1:8080 (lease 694d9b4c3e6e2a0f)
  payments/p-1 is not_ready "http GET ...: 503 Service Unavailable"
  retrying in 2s (attempt 3): <cause>
  lost payments/p-1: <cause>
  registered again payments/p-1 at 127.0.0.1:8080 (lease 694d9b4c3e6e2a11)
  conflict: <cause>

On Ctrl+C it revokes its lease, so watchers see the instance leave at once,
and prints "deregistered". With --http ADDR it also serves roster's
Prometheus metrics at /metrics and the registration's status at /status
(200 once registered, and through etcd outages; 503 before and after),
answering requests that name it by an IP address, localhost, the --http
host or an --allow-host name (against DNS rebinding). The first
registration must succeed within
--timeout. An empty --id is derived from the address (10.0.0.7:8080 gives
10.0.0.7-8080).

--weight and --zone publish the instance's share of traffic and locality.
With one of --health-http URL, --health-grpc HOST:PORT or --health-tcp
HOST:PORT the instance is published not_ready (visible, not routed) until
the check passes, then serving; after --health-failure-threshold failures in
a row it is not_ready again, with the check's output as its reason. A failing
check never deregisters the instance.`,
		Example: `  roster register --service payments --id p-1 --address 127.0.0.1:8080 --meta zone=a --meta version=1.4.2
  roster register --service payments --address 10.0.0.7:8080 --ttl 5s
  roster register --service payments --address 10.0.0.7:8080 --http 127.0.0.1:9090
  roster register --service payments --address 10.0.0.7:8080 --weight 200 --zone eu-west-1a --health-http http://10.0.0.7:8080/healthz --health-period 5s`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := f.instance()
			if err != nil {
				return err
			}
			// newRegistry reads --ttl (or ROSTER_TTL) with the connection
			// flags.
			b, s, err := a.newRegistry(cmd.Context(), cmd.Flags())
			if err != nil {
				return err
			}
			hosts, err := uiHosts(f.http, f.allowHosts)
			if err != nil {
				_ = b.Close()
				return err
			}
			var opts []health.Option
			if f.http != "" {
				col, stop, err := a.serveObservability(f.http, b, hosts)
				if err != nil {
					_ = b.Close()
					return err
				}
				defer stop() // after register has closed the backend
				opts = append(opts, health.WithObserver(col.ObserveCheck))
			}
			gate, closeCheck, err := f.gate(b, opts...)
			if err != nil {
				_ = b.Close()
				return err
			}
			defer closeCheck()
			return a.register(cmd.Context(), b, gate, s, in)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.service, "service", "", "service name (required)")
	fs.StringVar(&f.id, "id", "", "instance ID (default: derived from --address)")
	fs.StringVar(&f.address, "address", "", "host:port where clients reach the instance (required)")
	fs.StringArrayVar(&f.meta, "meta", nil, "metadata as key=value; repeat for more")
	fs.StringVar(&f.http, "http", "", "serve Prometheus metrics at /metrics and the registration status at /status on this address (e.g. 127.0.0.1:9090)")
	fs.StringSliceVar(&f.allowHosts, "allow-host", nil, "a host name --http is reached by, besides IP addresses and localhost (repeat or comma-separate; requests naming other hosts are refused)")
	fs.IntVar(&f.weight, "weight", 0, fmt.Sprintf("relative share of new traffic, 1..%d (default %d)", discovery.MaxWeight, discovery.DefaultWeight))
	fs.StringVar(&f.zone, "zone", "", "locality the instance runs in, such as eu-west-1a")
	fs.StringVar(&f.healthHTTP, "health-http", "", "publish the instance serving only while GET of this URL answers 2xx (not_ready until it does)")
	fs.StringVar(&f.healthGRPC, "health-grpc", "", "publish the instance serving only while the gRPC health service at this host:port says SERVING")
	fs.StringVar(&f.healthGRPCService, "health-grpc-service", "", "service name to ask the gRPC health service about (default: the whole server)")
	fs.StringVar(&f.healthTCP, "health-tcp", "", "publish the instance serving only while a TCP connection to this host:port opens")
	fs.DurationVar(&f.health.InitialDelay, "health-initial-delay", 0, "wait before the first health check")
	fs.DurationVar(&f.health.Period, "health-period", health.DefaultPeriod, "time between health checks")
	fs.DurationVar(&f.health.Timeout, "health-timeout", health.DefaultTimeout, "bound of one health check")
	fs.IntVar(&f.health.SuccessThreshold, "health-success-threshold", health.DefaultSuccessThreshold, "passes in a row that make a not ready instance serving")
	fs.IntVar(&f.health.FailureThreshold, "health-failure-threshold", health.DefaultFailureThreshold, "failures in a row that make a serving instance not ready")
	fs.Duration("ttl", etcd.DefaultTTL, "TTL: how long the registry keeps the instance once this process stops renewing it ($"+backends.EnvTTL+")")
	return cmd
}

// instance builds and validates the instance from the flags; errors name
// the flag.
func (f *registerFlags) instance() (discovery.Instance, error) {
	if f.service == "" {
		return discovery.Instance{}, inputErrorf("--service is required")
	}
	if f.address == "" {
		return discovery.Instance{}, inputErrorf("--address is required")
	}
	in := discovery.Instance{Service: f.service, ID: f.id, Address: f.address, Weight: f.weight, Zone: f.zone}
	for _, kv := range f.meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return discovery.Instance{}, inputErrorf("invalid --meta %q: want key=value", kv)
		}
		if k == "" {
			return discovery.Instance{}, inputErrorf("invalid --meta %q: empty key", kv)
		}
		if _, dup := in.Metadata[k]; dup {
			return discovery.Instance{}, inputErrorf("invalid --meta: key %q given twice", k)
		}
		if in.Metadata == nil {
			in.Metadata = make(map[string]string)
		}
		in.Metadata[k] = v
	}
	if err := in.Validate(); err != nil {
		var fe *discovery.FieldError
		if !errors.As(err, &fe) {
			return discovery.Instance{}, inputError{err}
		}
		switch {
		case fe.Field == "Service":
			return discovery.Instance{}, fieldInputError("--service", f.service, err)
		case fe.Field == "ID":
			return discovery.Instance{}, fieldInputError("--id", f.id, err)
		case fe.Field == "Address":
			return discovery.Instance{}, fieldInputError("--address", f.address, err)
		case fe.Field == "Weight":
			return discovery.Instance{}, fieldInputError("--weight", strconv.Itoa(f.weight), err)
		case fe.Field == "Zone":
			return discovery.Instance{}, fieldInputError("--zone", f.zone, err)
		default: // Metadata: values may be confidential, so none is printed
			return discovery.Instance{}, inputErrorf("invalid --meta: %s %s", fe.Field, fe.Reason)
		}
	}
	return in.Normalize()
}

// gate returns the Registrar to register through: b itself, or, with a
// --health-* flag, a health.Registrar over b made with opts (with --http,
// one that reports every check to the metrics); and a func that releases
// the check.
func (f *registerFlags) gate(b registry, opts ...health.Option) (discovery.Registrar, func(), error) {
	var check health.Check
	closeCheck := func() {}
	n := 0
	for _, v := range []string{f.healthHTTP, f.healthGRPC, f.healthTCP} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return b, closeCheck, nil
	case n > 1:
		return nil, nil, inputErrorf("give at most one of --health-http, --health-grpc and --health-tcp")
	case f.healthHTTP != "":
		u, err := url.Parse(f.healthHTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, inputErrorf("invalid --health-http %q: want an http:// or https:// URL", f.healthHTTP)
		}
		check = health.HTTP(f.healthHTTP)
	case f.healthGRPC != "":
		if _, _, err := net.SplitHostPort(f.healthGRPC); err != nil {
			return nil, nil, inputErrorf("invalid --health-grpc %q: want host:port", f.healthGRPC)
		}
		c, err := health.DialGRPC(f.healthGRPC, f.healthGRPCService)
		if err != nil {
			return nil, nil, inputErrorf("invalid --health-grpc %q: %v", f.healthGRPC, err)
		}
		check, closeCheck = c, func() { _ = c.Close() }
	default:
		if _, _, err := net.SplitHostPort(f.healthTCP); err != nil {
			return nil, nil, inputErrorf("invalid --health-tcp %q: want host:port", f.healthTCP)
		}
		check = health.TCP(f.healthTCP)
	}
	g, err := health.New(b, check, f.health, opts...)
	if err != nil {
		closeCheck()
		return nil, nil, inputErrorf("invalid --health-* flag: %v", err)
	}
	return g, closeCheck, nil
}

// register registers in through reg (b, or a health.Registrar over b),
// prints its state changes until ctx ends, then closes reg and the
// backend, which revokes the lease.
func (a *app) register(ctx context.Context, b registry, reg discovery.Registrar, s settings, in discovery.Instance) error {
	sub := b.SubscribeStatus()
	defer sub.Stop()
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		a.printStatuses(sub, b)
	}()
	// Close ends the subscription, and so the printer.
	closeBackend := func() error {
		var err error
		if reg != discovery.Registrar(b) {
			err = reg.Close() // stops the checks and deregisters
		}
		err = errors.Join(err, b.Close())
		<-printed
		return err
	}

	rctx, cancel := requestContext(ctx, s)
	err := reg.Register(rctx, in)
	cancel()
	if err != nil {
		_ = closeBackend()
		return registryError(ctx, s, err)
	}

	<-ctx.Done()
	if err := closeBackend(); err != nil {
		return fmt.Errorf("deregister %s: %w (%s removes it when its TTL expires, within %v)", in.Key(), err, s.registryName(), s.ttl())
	}
	fmt.Fprintf(a.stdout, "deregistered %s\n", in.Key())
	return nil
}

// printStatuses prints the state changes of sub until it ends.
func (a *app) printStatuses(sub discovery.StatusSubscription, b registry) {
	seen := make(map[discovery.Key]bool)             // registered at least once
	last := make(map[discovery.Key]discovery.Status) // the last status printed
	for {
		st, err := sub.Next(context.Background())
		if err != nil {
			return // the backend was closed
		}
		key := st.Instance.Key()
		prev, had := last[key]
		last[key] = st
		var line string
		switch {
		case st.State == discovery.StateRegistered && had && prev.State == discovery.StateRegistered:
			// An update in place: a health check moved its condition.
			if prev.Instance.Condition == st.Instance.Condition && prev.Instance.Reason == st.Instance.Reason {
				continue
			}
			line = key.String() + " is " + conditionText(st.Instance.Condition, st.Instance.Reason)
		case st.State == discovery.StateRegistered:
			line = "registered " + key.String() + " at " + st.Instance.Address
			if seen[key] {
				line = "registered again " + key.String() + " at " + st.Instance.Address
			}
			if h := holderOf(b); h != "" {
				line += " (" + h + ")"
			}
			if st.Instance.Condition != discovery.ConditionServing {
				line += ", " + conditionText(st.Instance.Condition, st.Instance.Reason)
			}
			seen[key] = true
		case st.State == discovery.StateRetrying:
			line = fmt.Sprintf("retrying in %v (attempt %d): %v", st.RetryIn.Round(100*time.Millisecond), st.Attempt, st.Err)
		case st.State == discovery.StateLost:
			line = fmt.Sprintf("lost %s: %v", key, st.Err)
		case st.State == discovery.StateConflict:
			line = fmt.Sprintf("conflict: %v; waiting for it to leave", st.Err)
		default:
			// registering: Register reports its failure itself;
			// deregistered: printed once Close has succeeded.
			continue
		}
		fmt.Fprintln(a.stdout, line)
	}
}
