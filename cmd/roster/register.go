package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
)

type registerFlags struct {
	service, id, address string
	meta                 []string
	http                 string // --http: where to serve /metrics and /status
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
  retrying in 2s (attempt 3): <cause>
  lost payments/p-1: <cause>
  registered again payments/p-1 at 127.0.0.1:8080 (lease 694d9b4c3e6e2a11)
  conflict: <cause>

On Ctrl+C it revokes its lease, so watchers see the instance leave at once,
and prints "deregistered". With --http ADDR it also serves roster's
Prometheus metrics at /metrics and the registration's status at /status
(200 once registered, and through etcd outages; 503 before and after). The first registration must succeed within
--timeout. An empty --id is derived from the address (10.0.0.7:8080 gives
10.0.0.7-8080).`,
		Example: `  roster register --service payments --id p-1 --address 127.0.0.1:8080 --meta zone=a --meta version=1.4.2
  roster register --service payments --address 10.0.0.7:8080 --ttl 5s
  roster register --service payments --address 10.0.0.7:8080 --http 127.0.0.1:9090`,
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
			if f.http != "" {
				stop, err := a.serveObservability(f.http, b)
				if err != nil {
					_ = b.Close()
					return err
				}
				defer stop() // after register has closed the backend
			}
			return a.register(cmd.Context(), b, s, in)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.service, "service", "", "service name (required)")
	fs.StringVar(&f.id, "id", "", "instance ID (default: derived from --address)")
	fs.StringVar(&f.address, "address", "", "host:port where clients reach the instance (required)")
	fs.StringArrayVar(&f.meta, "meta", nil, "metadata as key=value; repeat for more")
	fs.StringVar(&f.http, "http", "", "serve Prometheus metrics at /metrics and the registration status at /status on this address (e.g. 127.0.0.1:9090)")
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
	in := discovery.Instance{Service: f.service, ID: f.id, Address: f.address}
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
		default: // Metadata: values may be confidential, so none is printed
			return discovery.Instance{}, inputErrorf("invalid --meta: %s %s", fe.Field, fe.Reason)
		}
	}
	return in.Normalize()
}

// register registers in, prints its state changes until ctx ends, then
// closes the backend, which revokes the lease.
func (a *app) register(ctx context.Context, b registry, s settings, in discovery.Instance) error {
	sub := b.SubscribeStatus()
	defer sub.Stop()
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		a.printStatuses(sub, b)
	}()
	// Close ends the subscription, and so the printer.
	closeBackend := func() error {
		err := b.Close()
		<-printed
		return err
	}

	rctx, cancel := requestContext(ctx, s)
	err := b.Register(rctx, in)
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
	seen := make(map[discovery.Key]bool) // registered at least once
	for {
		st, err := sub.Next(context.Background())
		if err != nil {
			return // the backend was closed
		}
		key := st.Instance.Key()
		var line string
		switch st.State {
		case discovery.StateRegistered:
			line = "registered " + key.String() + " at " + st.Instance.Address
			if seen[key] {
				line = "registered again " + key.String() + " at " + st.Instance.Address
			}
			if h := b.holder(); h != "" {
				line += " (" + h + ")"
			}
			seen[key] = true
		case discovery.StateRetrying:
			line = fmt.Sprintf("retrying in %v (attempt %d): %v", st.RetryIn.Round(100*time.Millisecond), st.Attempt, st.Err)
		case discovery.StateLost:
			line = fmt.Sprintf("lost %s: %v", key, st.Err)
		case discovery.StateConflict:
			line = fmt.Sprintf("conflict: %v; waiting for it to leave", st.Err)
		default:
			// registering: Register reports its failure itself;
			// deregistered: printed once Close has succeeded.
			continue
		}
		fmt.Fprintln(a.stdout, line)
	}
}
