// Package fxall is the explicit all-backends module of roster's fx
// integration, fx's one allowed "kitchen sink": its [Module] selects the
// backend by name at run time (fxmodule.Config.Backend, or the
// ROSTER_BACKEND environment variable) among etcd, NATS and memory, so an
// application that uses it links the clients of every backend. An
// application that knows its backend adds that backend's module instead
// (etcdfx.Module, natsfx.Module, memoryfx.Module) and links only that
// backend's client.
//
//	fx.New(
//		fxmodule.Module,
//		fxall.Module, // ROSTER_BACKEND=nats ROSTER_ENDPOINTS=nats://nats-0:4222 ...
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
package fxall

import (
	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/etcdfx"
	"github.com/roster-sd/roster/fxmodule/memoryfx"
	"github.com/roster-sd/roster/fxmodule/natsfx"
)

// ModuleName is the name of Module.
const ModuleName = "roster.all"

// Module provides discovery.Backend, discovery.Registrar and
// discovery.Resolver: the backend fxmodule.Config.Backend names (empty:
// etcd), built by New and closed at stop. Use it with fxmodule.Module.
var Module = fx.Module(ModuleName, fx.Provide(New))

// Params are the inputs of New: those of every backend's constructor.
// Every field but Lifecycle is optional.
type Params struct {
	fx.In

	// Lifecycle receives the hook that closes the backend. Outside fx it
	// may be nil; closing the backend is then the caller's job.
	Lifecycle fx.Lifecycle

	// Module is fxmodule's Config, as fxmodule.Module provides it
	// (fxmodule.LoadConfig): its Backend selects the backend. Outside fx,
	// a zero one means LoadConfig's (ROSTER_BACKEND and the others).
	Module fxmodule.Config `name:"roster.config" optional:"true"`
	// Etcd configures the etcd backend; see etcdfx.Params.Config.
	Etcd etcd.Config `optional:"true"`
	// NATS configures the NATS backend; see natsfx.Params.Config.
	NATS nats.Config `optional:"true"`
	// Store is the memory backend's store; see memoryfx.Params.Store.
	Store *memory.Store `optional:"true"`
	// Logger is the application's logger. Default: the backend's.
	Logger hclog.Logger `optional:"true"`
	// Client is an etcd client the application owns; see
	// etcdfx.Params.Client.
	Client *clientv3.Client `optional:"true"`
}

// New builds the backend that p.Module.Backend names with that backend's
// constructor (etcdfx.New, natsfx.New or memoryfx.New), whose
// documentation says how it is configured and closed. An invalid Config
// or environment gives an error wrapping fxmodule.ErrInvalidConfig (and
// the backend's ErrInvalidConfig for its own settings) that names the
// field or variable.
func New(p Params) (fxmodule.Result, error) {
	mod, err := fxmodule.LoadConfig(p.Module)
	if err != nil {
		return fxmodule.Result{}, err
	}
	switch mod.Backend {
	case fxmodule.BackendMemory:
		return memoryfx.New(memoryfx.Params{Lifecycle: p.Lifecycle, Store: p.Store, Module: mod})
	case fxmodule.BackendNATS:
		return natsfx.New(natsfx.Params{Lifecycle: p.Lifecycle, Config: p.NATS, Module: mod, Logger: p.Logger})
	default: // fxmodule.BackendEtcd or "": LoadConfig accepts no other name
		return etcdfx.New(etcdfx.Params{Lifecycle: p.Lifecycle, Config: p.Etcd, Module: mod, Logger: p.Logger, Client: p.Client})
	}
}
