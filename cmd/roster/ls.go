package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends/etcd"
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
			b, cfg, err := a.newBackend(cmd.Context(), cmd.Flags(), nil)
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, cancel := requestContext(cmd.Context(), cfg)
			defer cancel()
			wrap := func(err error) error { return etcdError(cmd.Context(), cfg, err) }
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

// lsServices counts the instances of every service with one keys-only
// range read over the prefix. wrap describes an etcd error.
func (a *app) lsServices(ctx context.Context, b *etcd.Backend, asJSON bool, wrap func(error) error) error {
	prefix := b.Prefix() + "/"
	resp, err := b.Client().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return wrap(err)
	}
	counts := make(map[string]int)
	for _, kv := range resp.Kvs {
		service, id, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
		if !ok || discovery.ValidateName("Service", service) != nil || discovery.ValidateName("ID", id) != nil {
			a.warnf("skipping key %q: not %s<service>/<id>", kv.Key, prefix)
			continue
		}
		counts[service]++
	}
	list := make([]serviceCount, 0, len(counts))
	for s, n := range counts {
		list = append(list, serviceCount{Service: s, Instances: n})
	}
	slices.SortFunc(list, func(x, y serviceCount) int { return cmp.Compare(x.Service, y.Service) })

	if asJSON {
		return writeJSON(a, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(a.stdout, "no services under %s\n", b.Prefix())
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

	lease clientv3.LeaseID
}

// lsInstances lists the instances of service with the time left on their
// leases. wrap describes an etcd error.
func (a *app) lsInstances(ctx context.Context, b *etcd.Backend, service string, asJSON bool, wrap func(error) error) error {
	prefix := b.Key(service, "")
	resp, err := b.Client().Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return wrap(err)
	}
	rows := make([]instanceRow, 0, len(resp.Kvs))
	ttls := make(map[clientv3.LeaseID]*int64)
	for _, kv := range resp.Kvs {
		var in discovery.Instance
		err := json.Unmarshal(kv.Value, &in)
		if err == nil {
			err = in.Validate()
		}
		if err == nil {
			// Validate lets an empty ID through (Register derives it);
			// a stored instance has one, the last segment of its key.
			err = discovery.ValidateName("ID", in.ID)
		}
		if id := strings.TrimPrefix(string(kv.Key), prefix); err == nil && (in.Service != service || in.ID != id) {
			err = fmt.Errorf("it holds instance %s/%s", in.Service, in.ID)
		}
		if err != nil {
			a.warnf("skipping key %q: not a valid instance: %s", kv.Key, escapeUnprintable(err.Error()))
			continue
		}
		row := instanceRow{Service: in.Service, ID: in.ID, Address: in.Address, Metadata: in.Metadata, lease: clientv3.LeaseID(kv.Lease)}
		if row.lease != 0 {
			row.Lease = strconv.FormatInt(kv.Lease, 16)
			ttls[row.lease] = nil
		}
		rows = append(rows, row)
	}
	for lease := range ttls {
		resp, err := b.Client().TimeToLive(ctx, lease)
		if err != nil {
			return wrap(err)
		}
		ttl := resp.TTL // -1 once the lease has expired
		ttls[lease] = &ttl
	}
	for i := range rows {
		if rows[i].lease != 0 {
			rows[i].TTLSeconds = ttls[rows[i].lease]
		}
	}
	slices.SortFunc(rows, func(x, y instanceRow) int { return cmp.Compare(x.ID, y.ID) })

	if asJSON {
		return writeJSON(a, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintf(a.stdout, "no instances of %s under %s\n", service, b.Prefix())
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

func writeJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
