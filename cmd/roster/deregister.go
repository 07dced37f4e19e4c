package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/discovery"
)

func (a *app) deregisterCmd() *cobra.Command {
	var service, id string
	cmd := &cobra.Command{
		Use:   "deregister --service S --id I",
		Short: "Delete one instance's key (an operator's fix)",
		Long: `deregister deletes the key of one instance, whoever registered it (etcd's
<prefix>/<service>/<id>, NATS's <service>.<id> in the bucket): an operator's
fix for a stale entry, such as one left by a process that died and whose
lease or TTL has not expired yet. Watchers see it leave at once.

It prints "deleted service/id", or fails with "not found" (exit status 1)
when there is no such key. A process that is alive and still registered
puts its instance back at once: stop that process instead.`,
		Example: `  roster deregister --service payments --id p-1`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName("--service", "Service", service); err != nil {
				return err
			}
			if err := checkName("--id", "ID", id); err != nil {
				return err
			}
			b, s, err := a.newRegistry(cmd.Context(), cmd.Flags())
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, cancel := requestContext(cmd.Context(), s)
			defer cancel()
			key := discovery.Key{Service: service, ID: id}
			switch err := b.Delete(ctx, service, id); {
			case errors.Is(err, discovery.ErrNotRegistered):
				// The key, as the help above describes it.
				return fmt.Errorf("%s not found (no %s)", key, b.EntryOf(key))
			case err != nil:
				return registryError(cmd.Context(), s, err)
			}
			fmt.Fprintf(a.stdout, "deleted %s\n", key)
			return nil
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "service name (required)")
	cmd.Flags().StringVar(&id, "id", "", "instance ID (required)")
	return cmd
}
