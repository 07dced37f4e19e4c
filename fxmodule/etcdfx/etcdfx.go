// Package etcdfx provides roster's etcd backend to a go.uber.org/fx
// application: add [Module] next to fxmodule.Module, and the application
// links etcd's client and no other registry's.
//
//	fx.New(
//		fxmodule.Module,
//		etcdfx.Module,
//		fx.Supply(etcd.Config{Endpoints: []string{"etcd-0:2379"}}), // optional: else ROSTER_* variables
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
//
// The package lives under fxmodule, not in backends/etcd, so that a
// program that uses the etcd backend without fx does not link fx, and
// the backend's package keeps no fx code to maintain. To select the
// backend by name at run time (ROSTER_BACKEND), use fxall.Module instead.
package etcdfx

import (
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/retry"
)

// ModuleName is the name of Module.
const ModuleName = "roster.etcd"

// Module provides discovery.Backend, discovery.Registrar and
// discovery.Resolver: an etcd backend built by New, closed at stop. Use
// it with fxmodule.Module, which registers the application's instances
// on it.
var Module = fx.Module(ModuleName, fx.Provide(New))

// Params are the inputs of New. Every field but Lifecycle is optional.
type Params struct {
	fx.In

	// Lifecycle receives the hook that closes the backend. Outside fx it
	// may be nil; closing the backend is then the caller's job.
	Lifecycle fx.Lifecycle

	// Config configures the backend (endpoints, prefix, TTL, TLS from PEM
	// files, credentials...), with etcd's defaults; the application
	// supplies it with fx.Supply(etcd.Config{...}). A zero Config (none
	// supplied) means etcd.ConfigFromEnv(os.LookupEnv). Its DialTimeout
	// and RequestTimeout default to Module's Timeout, its Retry to
	// Module's Retry, and its Logger to Logger.
	Config etcd.Config `optional:"true"`
	// Module is fxmodule's Config, as fxmodule.Module provides it
	// (fxmodule.LoadConfig). Outside fx, a zero one means LoadConfig's.
	Module fxmodule.Config `name:"roster.config" optional:"true"`
	// Logger is the application's logger. Default: the backend's.
	Logger hclog.Logger `optional:"true"`
	// Client is an etcd client the application owns. New then uses it
	// (etcd.NewWithClient) instead of dialing, and never closes it.
	Client *clientv3.Client `optional:"true"`
}

// New builds the etcd backend and, with a Lifecycle, closes it at stop
// (after the module has deregistered the instances, since the
// registration depends on the backend); an application-provided client
// is left to its owner.
//
// An invalid Config or environment gives an error wrapping
// etcd.ErrInvalidConfig (or fxmodule.ErrInvalidConfig for the module's
// own settings) that names the field or variable. Building the backend
// does not wait for etcd to be reachable, except with Username set: the
// etcd client logs in while it is being built.
func New(p Params) (fxmodule.Result, error) {
	return fxmodule.BuildBackend(spec(p.Client), p.Lifecycle, p.Module, p.Config, p.Logger)
}

// spec describes the etcd backend to fxmodule.BuildBackend; with cli, it
// is built on that client.
func spec(cli *clientv3.Client) fxmodule.BackendSpec[etcd.Config] {
	return fxmodule.BackendSpec[etcd.Config]{
		Name: fxmodule.BackendEtcd, Module: "etcdfx.Module", FromEnv: etcd.ConfigFromEnv,
		Fields: func(c *etcd.Config) (*time.Duration, *time.Duration, *retry.Policy, *hclog.Logger) {
			return &c.DialTimeout, &c.RequestTimeout, &c.Retry, &c.Logger
		},
		Build: func(c etcd.Config, _ fxmodule.Config) (discovery.Backend, error) {
			if cli != nil {
				return etcd.NewWithClient(cli, c)
			}
			return etcd.New(c)
		},
	}
}
