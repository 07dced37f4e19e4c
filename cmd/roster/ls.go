package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) lsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "ls [service]",
		Short: "List services, or the instances of one service",
		Long: `ls without an argument lists the services registered under the prefix with
their instance counts (one read of the keys, without values).

ls with a service lists its instances: ID, ADDRESS, METADATA (k=v sorted by
key) and TTL, the seconds left on the instance's lease ("-" for a key without
a lease). Values that are not valid instances are skipped with a warning on
stderr. A metadata key or value with a space, '"', '\', ',', '=' or a
character that is not printable (a control character, a terminal escape) is
printed quoted, with Go's escapes ("a\nb"), so that what anyone wrote to
etcd cannot forge lines of output.

-o json prints a JSON array instead: of {"service", "instances"} objects, or
of instances with "ttl_seconds" (null without a lease) and "lease" (hex).`,
		Example: `  roster ls
  roster ls payments
  roster ls payments -o json --endpoints 10.0.0.1:2379,10.0.0.2:2379`,
		Args: serviceArg(true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return inputErrorf("invalid -o/--output %q: want table or json", output)
			}
			if len(args) == 1 {
				if err := checkName("service argument", "Service", args[0]); err != nil {
					return err
				}
			}
			b, s, err := a.newRegistry(cmd.Context(), cmd.Flags())
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, cancel := requestContext(cmd.Context(), s)
			defer cancel()
			wrap := func(err error) error { return registryError(cmd.Context(), s, err) }
			if len(args) == 0 {
				return a.lsServices(ctx, b, output == "json", wrap)
			}
			return a.lsInstances(ctx, b, args[0], output == "json", wrap)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

type serviceCount struct {
	Service   string `json:"service"`
	Instances int    `json:"instances"`
}

// lsServices counts the instances of every service (for etcd, with one
// keys-only range read over the prefix). wrap describes a registry error.
func (a *app) lsServices(ctx context.Context, b registry, asJSON bool, wrap func(error) error) error {
	list, skipped, err := b.services(ctx)
	if err != nil {
		return wrap(err)
	}
	a.warnSkipped(skipped)

	if asJSON {
		return writeJSON(a, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(a.stdout, "no services %s\n", b.where())
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%d\n", safe(s.Service), s.Instances)
	}
	return tw.Flush()
}

// instanceRow is one instance as ls -o json prints it.
type instanceRow struct {
	Service    string            `json:"service"`
	ID         string            `json:"id"`
	Address    string            `json:"address"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	TTLSeconds *int64            `json:"ttl_seconds"` // nil: no lease
	Lease      string            `json:"lease,omitempty"`
}

// lsInstances lists the instances of service with the time they have
// left. wrap describes a registry error.
func (a *app) lsInstances(ctx context.Context, b registry, service string, asJSON bool, wrap func(error) error) error {
	rows, skipped, err := b.instances(ctx, service)
	if err != nil {
		return wrap(err)
	}
	a.warnSkipped(skipped)

	if asJSON {
		return writeJSON(a, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintf(a.stdout, "no instances of %s %s\n", service, b.where())
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tMETADATA\tTTL")
	for _, r := range rows {
		meta := formatMeta(r.Metadata)
		if meta == "" {
			meta = "-"
		}
		ttl := "-"
		switch {
		case r.TTLSeconds == nil:
		case *r.TTLSeconds < 0:
			ttl = "expired"
		default:
			ttl = strconv.FormatInt(*r.TTLSeconds, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", safe(r.ID), safe(r.Address), meta, ttl)
	}
	return tw.Flush()
}

// warnSkipped warns on stderr about the registry's entries that ls passed
// over; what they hold is escaped, so that it cannot forge lines.
func (a *app) warnSkipped(skipped []skippedEntry) {
	for _, s := range skipped {
		a.warnf("skipping key %q: %s", s.key, escapeUnprintable(s.err.Error()))
	}
}

func writeJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
