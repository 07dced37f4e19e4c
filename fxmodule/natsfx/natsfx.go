// Package natsfx provides roster's NATS JetStream key-value backend to a
// go.uber.org/fx application: add [Module] next to fxmodule.Module, and
// the application links NATS's client and no other registry's.
//
//	fx.New(
//		fxmodule.Module,
//		natsfx.Module,
//		fx.Supply(nats.Config{Endpoints: []string{"nats://nats-0:4222"}}), // optional: else ROSTER_* variables
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
//
// The package lives under fxmodule, not in backends/nats, so that a
// program that uses the NATS backend without fx does not link fx, and
// the backend's package keeps no fx code to maintain. To select the
// backend by name at run time (ROSTER_BACKEND), use fxall.Module instead.
package natsfx

import (
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/retry"
)

// ModuleName is the name of Module.
const ModuleName = "roster.nats"

// Module provides discovery.Backend, discovery.Registrar and
// discovery.Resolver: a NATS backend built by New, closed at stop. Use it
// with fxmodule.Module, which registers the application's instances on
// it.
var Module = fx.Module(ModuleName, fx.Provide(New))

// Params are the inputs of New. Every field but Lifecycle is optional.
type Params struct {
	fx.In

	// Lifecycle receives the hook that closes the backend. Outside fx it
	// may be nil; closing the backend is then the caller's job.
	Lifecycle fx.Lifecycle

	// Config configures the backend (endpoints, bucket, TTL, TLS,
	// credentials...), with NATS's defaults; the application supplies it
	// with fx.Supply(nats.Config{...}). A zero Config (none supplied)
	// means nats.ConfigFromEnv(os.LookupEnv). Its DialTimeout and
	// RequestTimeout default to Module's Timeout, its Retry to Module's
	// Retry, and its Logger to Logger.
	Config nats.Config `optional:"true"`
	// Module is fxmodule's Config, as fxmodule.Module provides it
	// (fxmodule.LoadConfig). Outside fx, a zero one means LoadConfig's.
	Module fxmodule.Config `name:"roster.config" optional:"true"`
	// Logger is the application's logger. Default: the backend's.
	Logger hclog.Logger `optional:"true"`
}

// New builds the NATS backend and, with a Lifecycle, closes it at stop
// (after the module has deregistered the instances, since the
// registration depends on the backend).
//
// An invalid Config or environment gives an error wrapping
// nats.ErrInvalidConfig (or fxmodule.ErrInvalidConfig for the module's
// own settings) that names the field or variable.
func New(p Params) (fxmodule.Result, error) {
	return fxmodule.BuildBackend(fxmodule.BackendSpec[nats.Config]{
		Name: fxmodule.BackendNATS, Module: "natsfx.Module", FromEnv: nats.ConfigFromEnv,
		Fields: func(c *nats.Config) (*time.Duration, *time.Duration, *retry.Policy, *hclog.Logger) {
			return &c.DialTimeout, &c.RequestTimeout, &c.Retry, &c.Logger
		},
		Build: func(c nats.Config, _ fxmodule.Config) (discovery.Backend, error) { return nats.New(c) },
	}, p.Lifecycle, p.Module, p.Config, p.Logger)
}
