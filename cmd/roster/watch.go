package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/discovery"
)

func (a *app) watchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch <service>",
		Short: "Follow the instances of a service as they change",
		Long: `watch prints the instances of a service, then prints the set again whenever
it changes, until Ctrl+C. Each change is a line with a timestamp (RFC 3339),
the service and the count of instances, followed by one line per instance
that changed:

  + id address [k=v,...]   added
  - id address [k=v,...]   removed
  ~ id address [k=v,...]   changed address or metadata (new values)

Metadata keys and values are printed as ls prints them: quoted, with Go's
escapes, when they hold a space, '"', '\', ',', '=' or a character that is
not printable.

The watch survives registry restarts and outages: when etcd (or NATS) cannot
be reached it prints "etcd unavailable, still watching", and once it is back
it prints the set again (marked "etcd is back") with what changed meanwhile.
Only reaching the registry the first time is bounded by --timeout.`,
		Example: `  roster watch payments`,
		Args:    serviceArg(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if err := checkName("service argument", "Service", service); err != nil {
				return err
			}
			b, s, err := a.newRegistry(cmd.Context(), cmd.Flags())
			if err != nil {
				return err
			}
			defer b.Close()
			ctx := cmd.Context()
			w, err := b.Watch(ctx, service)
			if err != nil {
				return registryError(ctx, s, err)
			}
			defer w.Stop()

			// The first set must come within the timeout; outages
			// reported meanwhile just mean it has not come yet.
			first, cancel := requestContext(ctx, s)
			set, err := w.Next(first)
			for errors.Is(err, discovery.ErrUnavailable) {
				set, err = w.Next(first)
			}
			cancel()
			if err != nil {
				return registryError(ctx, s, err)
			}
			a.printChange(service, nil, set, "")
			note := ""
			for {
				next, err := w.Next(ctx)
				switch {
				case errors.Is(err, discovery.ErrUnavailable):
					// Transient: the watcher resumes once etcd is back.
					fmt.Fprintf(a.stdout, "%s %s: %s unavailable, still watching: %v\n",
						time.Now().Format(time.RFC3339), service, s.registryName(), err)
					note = " (" + s.registryName() + " is back)"
					continue
				case err != nil && ctx.Err() != nil:
					return nil // Ctrl+C
				case err != nil:
					return fmt.Errorf("watch %s: %w", service, err)
				}
				a.printChange(service, set, next, note)
				set, note = next, ""
			}
		},
	}
}

// printChange prints the change from the set old to the set cur, both
// sorted by ID, as one write. note is appended to the header line.
func (a *app) printChange(service string, old, cur []discovery.Instance, note string) {
	var b strings.Builder
	n := "instances"
	if len(cur) == 1 {
		n = "instance"
	}
	fmt.Fprintf(&b, "%s %s: %d %s%s\n", time.Now().Format(time.RFC3339), safe(service), len(cur), n, note)
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i].ID < cur[j].ID):
			fmt.Fprintf(&b, "- %s\n", describe(old[i]))
			i++
		case i == len(old) || cur[j].ID < old[i].ID:
			fmt.Fprintf(&b, "+ %s\n", describe(cur[j]))
			j++
		default:
			if !old[i].Equal(cur[j]) {
				fmt.Fprintf(&b, "~ %s\n", describe(cur[j]))
			}
			i++
			j++
		}
	}
	_, _ = a.stdout.Write([]byte(b.String()))
}
