package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/discovery"
)

func (a *app) maintCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "maint",
		Short: "Take an instance or a service out of rotation (operator's override)",
		Long: `maint sets, clears and lists operators' maintenance overrides: an instance
(service/id) or a whole service (service) taken out of rotation without
touching the processes that registered it.

An override is stored apart from the instances' keys (etcd's
<prefix>/<service>/~maint[/<id>], NATS's <service>./maint[/<id>] in the
bucket), so the owning process keeps publishing its instance and never
undoes the override, which survives the process's restarts and the
registry's. Every roster reader (Resolve and Watch, the gRPC resolver, the
cache, ls, watch, the web view) shows the instances under it as maintenance,
with the operator's reason, and no roster client routes to them. An override
of an instance that is not registered yet applies when it appears.`,
		Example: `  roster maint on payments/p-1 --reason "disk replacement"
  roster maint on payments/p-1 --reason "kernel upgrade" --for 1h
  roster maint on payments --reason "region evacuation"
  roster maint ls payments
  roster maint off payments/p-1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("missing subcommand: on, off or ls")}
		},
	}
	cmd.AddCommand(a.maintOnCmd(), a.maintOffCmd(), a.maintLsCmd())
	return cmd
}

// targetArg is the argument validator of commands that take one target,
// service or service/id.
func targetArg(cmd *cobra.Command, a []string) error {
	switch {
	case len(a) == 0:
		return usageError{errors.New("missing target argument: service/id, or service for the whole service")}
	case len(a) > 1:
		return usageError{fmt.Errorf("%s takes one target; got %q", cmd.CommandPath(), a)}
	}
	return nil
}

// parseTarget reads service/id, or service alone for the whole service.
func parseTarget(arg string) (discovery.Key, error) {
	service, id, hasID := strings.Cut(arg, "/")
	if err := checkName("service in the target argument", "Service", service); err != nil {
		return discovery.Key{}, err
	}
	if hasID {
		if err := checkName("ID in the target argument", "ID", id); err != nil {
			return discovery.Key{}, err
		}
	}
	return discovery.Key{Service: service, ID: id}, nil
}

// targetText is the target as maint prints it: service/id, or "service
// (whole service)".
func targetText(k discovery.Key) string {
	if k.ID == "" {
		return k.Service + " (whole service)"
	}
	return k.String()
}

// maintainer returns the registry's discovery.Maintainer.
func maintainer(r registry) (discovery.Maintainer, error) {
	m, ok := r.(discovery.Maintainer)
	if !ok {
		return nil, fmt.Errorf("the registry %s keeps no maintenance overrides", r.Where())
	}
	return m, nil
}

func (a *app) maintOnCmd() *cobra.Command {
	var reason string
	var d time.Duration
	cmd := &cobra.Command{
		Use:   "on service[/id] --reason R [--for D]",
		Short: "Put an instance, or a whole service, in maintenance",
		Long: `on puts the target in maintenance with the operator's reason (required: at
most 256 bytes, printable, one line), until "roster maint off", or for the
duration --for (it then ends by itself; the registry ends it, in whole
seconds). Setting it again replaces the reason and the end.

It prints "maintenance on <target>: <reason>" and the end, if any.`,
		Example: `  roster maint on payments/p-1 --reason "disk replacement" --for 2h
  roster maint on payments --reason "region evacuation"`,
		Args: targetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("reason") {
				return inputErrorf("--reason is required: say why the target is out of rotation")
			}
			if cmd.Flags().Changed("for") && d <= 0 {
				return inputErrorf("invalid --for %v: want a duration above 0 (leave --for out for an override until maint off)", d)
			}
			if err := discovery.ValidateMaintenance(target, reason, d); err != nil {
				var fe *discovery.FieldError
				if errors.As(err, &fe) && fe.Field == "Reason" {
					return fieldInputError("--reason", reason, err)
				}
				return inputError{err}
			}
			if err := a.withMaintainer(cmd, func(ctx context.Context, m discovery.Maintainer) error {
				return m.SetMaintenance(ctx, target, reason, d)
			}); err != nil {
				return err
			}
			line := fmt.Sprintf("maintenance on %s: %s", targetText(target), strconv.Quote(reason))
			if d > 0 {
				line += fmt.Sprintf(" for %v (until %s)", d, time.Now().Add(d).UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(a.stdout, line)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the target is out of rotation (required)")
	cmd.Flags().DurationVar(&d, "for", 0, "end the override by itself after this long (default: until maint off)")
	return cmd
}

func (a *app) maintOffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "off service[/id]",
		Short: "Put an instance, or a whole service, back in rotation",
		Long: `off clears the target's override: its instances read again as their
processes publish them. It prints "maintenance off <target>", or "no
maintenance override on <target>" when there was none (exit status 0: the
target is out of maintenance either way). An override of the whole service
and one of an instance are separate: clearing one leaves the other.`,
		Example: `  roster maint off payments/p-1
  roster maint off payments`,
		Args: targetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			var cleared error
			if err := a.withMaintainer(cmd, func(ctx context.Context, m discovery.Maintainer) error {
				cleared = m.ClearMaintenance(ctx, target)
				if errors.Is(cleared, discovery.ErrNoMaintenance) {
					return nil // out of maintenance either way
				}
				return cleared
			}); err != nil {
				return err
			}
			switch {
			case errors.Is(cleared, discovery.ErrNoMaintenance):
				fmt.Fprintf(a.stdout, "no maintenance override on %s\n", targetText(target))
			default:
				fmt.Fprintf(a.stdout, "maintenance off %s\n", targetText(target))
			}
			return nil
		},
	}
}

func (a *app) maintLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls service",
		Short: "List the maintenance overrides of a service",
		Long: `ls lists the overrides of a service and of its instances, registered or
not: TARGET, REASON (quoted), SINCE and UNTIL (UTC; "-" until maint off).`,
		Example: `  roster maint ls payments`,
		Args:    serviceArg(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("service argument", "Service", args[0]); err != nil {
				return err
			}
			var list []discovery.Maintenance
			if err := a.withMaintainer(cmd, func(ctx context.Context, m discovery.Maintainer) error {
				var err error
				list, err = m.ListMaintenance(ctx, args[0])
				return err
			}); err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintf(a.stdout, "no maintenance overrides on %s\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "TARGET\tREASON\tSINCE\tUNTIL")
			for _, o := range list {
				until := "-"
				if !o.Until.IsZero() {
					until = o.Until.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", targetText(o.Target()), strconv.Quote(o.Reason), o.Since.UTC().Format(time.RFC3339), until)
			}
			return tw.Flush()
		},
	}
}

// withMaintainer connects to the registry the command's flags select and
// runs do with its discovery.Maintainer, bounded by the request timeout;
// an error of the registry's is explained as every command explains it.
func (a *app) withMaintainer(cmd *cobra.Command, do func(ctx context.Context, m discovery.Maintainer) error) error {
	b, s, err := a.newRegistry(cmd.Context(), cmd.Flags())
	if err != nil {
		return err
	}
	defer b.Close()
	m, err := maintainer(b)
	if err != nil {
		return err
	}
	ctx, cancel := requestContext(cmd.Context(), s)
	defer cancel()
	if err := do(ctx, m); err != nil {
		return registryError(cmd.Context(), s, err)
	}
	return nil
}
