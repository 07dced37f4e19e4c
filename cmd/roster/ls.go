package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/discovery"
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
a lease). When any instance is not serving, or has a weight or a zone, the
table also shows CONDITION (serving, not_ready, draining, with the reason
quoted after it), WEIGHT (100 when unset) and ZONE. Values that are not valid instances are skipped with a warning on
stderr. A metadata key or value with a space, '"', '\', ',', '=' or a
character that is not printable (a control character, a terminal escape) is
printed quoted, with Go's escapes ("a\nb"), so that what anyone wrote to
etcd cannot forge lines of output.

-o json prints a JSON array instead: of {"service", "instances"} objects, or
of instances with "ttl_seconds" (null without a lease) and "lease" (etcd: the
lease in hex; NATS: the instance's own key, which its process renews).`,
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

// lsServices counts the instances of every service that v sees (for
// etcd, with one keys-only range read over the prefix). wrap describes a
// registry error.
func (a *app) lsServices(ctx context.Context, v discovery.OperatorView, asJSON bool, wrap func(error) error) error {
	summaries, skipped, err := v.Services(ctx)
	if err != nil {
		return wrap(err)
	}
	a.warnSkipped(skipped)
	list := make([]serviceCount, 0, len(summaries))
	for _, s := range summaries {
		list = append(list, serviceCount{Service: s.Service, Instances: s.Instances})
	}

	if asJSON {
		return writeJSON(a, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(a.stdout, "no services %s\n", v.Where())
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%d\n", safe(s.Service), s.Instances)
	}
	return tw.Flush()
}

// instanceRow is one instance as ls -o json prints it. The serving fields
// are omitted when they have their defaults (serving, no reason, default
// weight, no zone), as in the registry's values.
type instanceRow struct {
	Service    string              `json:"service"`
	ID         string              `json:"id"`
	Address    string              `json:"address"`
	Metadata   map[string]string   `json:"metadata,omitempty"`
	Condition  discovery.Condition `json:"condition,omitempty"`
	Reason     string              `json:"reason,omitempty"`
	Weight     int                 `json:"weight,omitempty"`
	Zone       string              `json:"zone,omitempty"`
	TTLSeconds *int64              `json:"ttl_seconds"`     // nil: no lease
	Lease      string              `json:"lease,omitempty"` // what keeps it alive: an etcd lease in hex, a NATS key
}

// rowOf is the row of an instance, without its time left.
func rowOf(in discovery.Instance) instanceRow {
	return instanceRow{Service: in.Service, ID: in.ID, Address: in.Address, Metadata: in.Metadata,
		Condition: in.Condition, Reason: in.Reason, Weight: in.Weight, Zone: in.Zone}
}

// servingColumns reports whether any row has a serving field away from its
// default, and so whether ls shows the CONDITION, WEIGHT and ZONE columns.
func servingColumns(rows []instanceRow) bool {
	for _, r := range rows {
		if r.Condition != discovery.ConditionServing || r.Reason != "" || r.Weight != 0 || r.Zone != "" {
			return true
		}
	}
	return false
}

// lsInstances lists the instances of service that v sees, with the time
// they have left. wrap describes a registry error.
func (a *app) lsInstances(ctx context.Context, v discovery.OperatorView, service string, asJSON bool, wrap func(error) error) error {
	infos, skipped, err := v.Instances(ctx, service)
	if err != nil {
		return wrap(err)
	}
	a.warnSkipped(skipped)
	rows := make([]instanceRow, 0, len(infos))
	for _, in := range infos {
		row := rowOf(in.Instance)
		row.Lease = in.Lease
		if in.HasTTL {
			ttl := int64(in.TTL / time.Second) // negative once the lease has run out
			row.TTLSeconds = &ttl
		}
		rows = append(rows, row)
	}

	if asJSON {
		return writeJSON(a, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintf(a.stdout, "no instances of %s %s\n", service, v.Where())
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	wide := servingColumns(rows)
	if wide {
		fmt.Fprintln(tw, "ID\tADDRESS\tCONDITION\tWEIGHT\tZONE\tMETADATA\tTTL")
	} else {
		fmt.Fprintln(tw, "ID\tADDRESS\tMETADATA\tTTL")
	}
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
		if wide {
			zone := "-"
			if r.Zone != "" {
				zone = safe(r.Zone)
			}
			weight := r.Weight
			if weight == 0 {
				weight = discovery.DefaultWeight
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", safe(r.ID), safe(r.Address), conditionText(r.Condition, r.Reason), weight, zone, meta, ttl)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", safe(r.ID), safe(r.Address), meta, ttl)
	}
	return tw.Flush()
}

// warnSkipped warns on stderr about the registry's entries that ls passed
// over; what they hold is escaped, so that it cannot forge lines.
func (a *app) warnSkipped(skipped []discovery.SkippedEntry) {
	for _, s := range skipped {
		a.warnf("skipping key %q: %s", s.Key, escapeUnprintable(s.Err.Error()))
	}
}

func writeJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
