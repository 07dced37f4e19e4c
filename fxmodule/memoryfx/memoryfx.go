// Package memoryfx provides roster's in-process memory backend to a
// go.uber.org/fx application: add [Module] next to fxmodule.Module, for
// tests and single-process applications. It links no registry's client.
//
//	fx.New(
//		fxmodule.Module,
//		memoryfx.Module,
//		fx.Supply(store), // optional: a *memory.Store shared by several applications
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "127.0.0.1:8080"}),
//	)
//
// The package lives under fxmodule, beside etcdfx and natsfx, so that
// package memory does not link fx.
package memoryfx

import (
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
)

// ModuleName is the name of Module.
const ModuleName = "roster.memory"

// Module provides discovery.Backend, discovery.Registrar and
// discovery.Resolver: a memory backend built by New, closed at stop. Use
// it with fxmodule.Module, which registers the application's instances on
// it.
var Module = fx.Module(ModuleName, fx.Provide(New))

// Params are the inputs of New. Every field but Lifecycle is optional.
type Params struct {
	fx.In

	// Lifecycle receives the hook that closes the backend. Outside fx it
	// may be nil; closing the backend is then the caller's job.
	Lifecycle fx.Lifecycle

	// Store is where the backend keeps its instances: one shared by
	// several applications (of one process) lets each see the others'.
	// Default: a Store of the backend's own, so instances are visible to
	// this application only.
	Store *memory.Store `optional:"true"`
	// Module is fxmodule's Config, as fxmodule.Module provides it
	// (fxmodule.LoadConfig): its Retry is the backend's retry policy.
	// Outside fx, a zero one means LoadConfig's.
	Module fxmodule.Config `name:"roster.config" optional:"true"`
}

// New builds the memory backend and, with a Lifecycle, closes it at stop
// (after the module has deregistered the instances). An invalid module
// Config gives an error wrapping fxmodule.ErrInvalidConfig.
func New(p Params) (fxmodule.Result, error) {
	return fxmodule.BuildBackend(fxmodule.BackendSpec[*memory.Store]{
		Name: fxmodule.BackendMemory, Module: "memoryfx.Module",
		Build: func(s *memory.Store, mod fxmodule.Config) (discovery.Backend, error) {
			return memory.New(s, memory.WithRetry(mod.Retry))
		},
	}, p.Lifecycle, p.Module, p.Store, nil)
}
