package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/examples/custombackend/mapbackend"
	"github.com/roster-sd/roster/fxmodule"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custombackend:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout io.Writer) error {
	// The registry, shared by every "process" (handle) below.
	registry := mapbackend.NewRegistry()

	// An fx application that registers itself with the custom backend.
	var status discovery.StatusReporter
	app := fx.New(
		fxmodule.Module,
		fxmodule.UseBackend(func(lc fx.Lifecycle) *mapbackend.Backend {
			b := registry.NewBackend()
			lc.Append(fx.StopHook(b.Close)) // the application owns its backend
			return b
		}),
		fxmodule.Instance(discovery.Instance{
			Service:  "inventory",
			Address:  "10.0.0.7:8080",
			Metadata: map[string]string{"zone": "eu-1"},
		}),
		fx.Populate(&status),
		fx.NopLogger,
	)
	if err := app.Err(); err != nil {
		return err
	}

	// Another handle on the registry, as a client process would have,
	// watches the service.
	observer := registry.NewBackend()
	defer observer.Close()
	w, err := observer.Watch(ctx, "inventory")
	if err != nil {
		return err
	}
	defer w.Stop()
	show := func(when string) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		set, err := w.Next(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-22s inventory = %s\n", when+":", describe(set))
		return nil
	}

	if err := show("before start"); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		return err
	}
	if err := show("after start"); err != nil {
		return err
	}
	for _, st := range status.Statuses() {
		fmt.Fprintf(stdout, "%-22s %s\n", "registration status:", st)
	}
	if err := app.Stop(startCtx); err != nil {
		return err
	}
	return show("after stop")
}

func describe(set []discovery.Instance) string {
	parts := make([]string, len(set))
	for i, in := range set {
		parts[i] = fmt.Sprintf("%s at %s %v", in.Key(), in.Address, in.Metadata)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
