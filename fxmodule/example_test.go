package fxmodule_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/fxmodule/fxall"
	"github.com/roster-sd/roster/fxmodule/memoryfx"
)

// An application registers its own instance and resolves its peers. It
// adds the core module and one backend's module: in production
// etcdfx.Module (or natsfx.Module) with ROSTER_ENDPOINTS and friends set;
// here memoryfx.Module keeps the example self-contained.
func Example() {
	var (
		resolver discovery.Resolver
		reg      *fxmodule.Registration
	)
	app := fx.New(
		fxmodule.Module,
		memoryfx.Module,
		// The application's servers would be provided and invoked here,
		// before Instance, so that they start before it registers.
		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
		fx.Populate(&resolver, &reg),
		fx.NopLogger,
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer app.Stop(ctx)

	if err := reg.Wait(ctx); err != nil { // registered in the background
		log.Fatal(err)
	}
	set, err := resolver.Resolve(ctx, "payments")
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range set {
		fmt.Println(in.Key(), in.Address)
	}
	// Output: payments/10.0.0.7-8080 10.0.0.7:8080
}

// A backend of the application's own takes the place of a backend
// module. Its constructor owns it: here it closes it with a stop hook, which
// fx runs after the module has deregistered the application's instances.
func ExampleUseBackend() {
	store := memory.NewStore() // shared, e.g. by the tests of several apps
	var backend discovery.Backend
	app := fx.New(
		fxmodule.Module,
		fxmodule.UseBackend(func(lc fx.Lifecycle) (*memory.Backend, error) {
			b, err := memory.New(store)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(b.Close))
			return b, nil
		}),
		fx.Populate(&backend),
		fx.NopLogger,
	)
	if err := app.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T\n", backend)
	// Output: *memory.Backend
}

// An application that lets its operators choose the backend at run time
// adds fxall.Module, which builds the one Config.Backend (or
// ROSTER_BACKEND) names, and links every backend's client.
func Example_selectByName() {
	var backend discovery.Backend
	app := fx.New(
		fxmodule.Module,
		fxall.Module,
		fx.Supply(fxmodule.Config{Backend: fxmodule.BackendMemory}), // or none: ROSTER_BACKEND
		fx.Populate(&backend),
		fx.NopLogger,
	)
	if err := app.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T\n", backend)
	// Output: *memory.Backend
}

// The instance is built from the server it describes, so fx starts the
// server before registering it and deregisters it before stopping the
// server, wherever ProvideInstance stands.
func ExampleProvideInstance() {
	type server struct{ addr string }
	var (
		reg      *fxmodule.Registration
		resolver discovery.Resolver
	)
	app := fx.New(
		fxmodule.Module,
		memoryfx.Module,
		fxmodule.ProvideInstance(func(s *server) discovery.Instance {
			return discovery.Instance{Service: "web", ID: "web-1", Address: s.addr}
		}),
		fx.Provide(func() *server { return &server{addr: "10.0.0.7:8080"} }),
		fx.Populate(&reg, &resolver),
		fx.NopLogger,
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer app.Stop(ctx)
	if err := reg.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	set, err := resolver.Resolve(ctx, "web")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(set[0].Key(), set[0].Address)
	// Output: web/web-1 10.0.0.7:8080
}

// ConfigFromEnv reads the module's ROSTER_* variables (the backend's are
// read by the backend's module); a malformed one is an error that names
// it.
func ExampleConfigFromEnv() {
	env := map[string]string{
		"ROSTER_BACKEND":     "nats",
		"ROSTER_DRAIN_DELAY": "3s",
	}
	cfg, err := fxmodule.ConfigFromEnv(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	fmt.Println(cfg.Backend, cfg.DrainDelay, err)

	env["ROSTER_TIMEOUT"] = "5"
	_, err = fxmodule.ConfigFromEnv(func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	fmt.Println(err)
	// Output:
	// nats 3s <nil>
	// fxmodule: invalid config: ROSTER_TIMEOUT is "5"; want a Go duration such as 15s or 1m
}

// Applications that start from the environment and change a few fields
// read it themselves and supply the result.
func ExampleConfig_fromEnvironment() {
	cfg, err := fxmodule.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		log.Fatal(err)
	}
	cfg.DrainDelay = 5 * time.Second // let clients notice before the servers stop
	_ = fx.New(
		fxmodule.Module,
		etcdfx.Module, // the etcd backend, configured by the ROSTER_* variables
		fx.Supply(cfg),
		// ...
	)
}
