package fxmodule

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/metrics"
)

// Names used in the fx graph. Struct tags cannot refer to constants, so
// they are spelled out in the tags of RegistrationParams and of the
// backends' modules' Params too.
const (
	// ModuleName is the name of Module.
	ModuleName = "roster"
	// CustomBackendName is the name under which an application provides
	// its own backend (see UseBackend): `name:"roster.custom"`.
	CustomBackendName = "roster.custom"
	// InstancesGroup is the value group of the application's own
	// instances (see Instance and ProvideInstance):
	// `group:"roster.instances"`.
	InstancesGroup = "roster.instances"
	// LoggerName names the module's logger, under the application's
	// hclog.Logger when it provides one.
	LoggerName = "roster.fx"
)

// Module is the backend-free core of roster's fx integration. It
// consumes a discovery.Backend from the graph, provided by one backend's
// module (etcdfx.Module, natsfx.Module, memoryfx.Module), by the
// all-backends fxall.Module, which selects one by name, or by the
// application itself (UseBackend); and provides:
//
//   - the Config it runs with, named "roster.config" ([LoadConfig]: the
//     application's Config, or the environment's, read once);
//
//   - discovery.StatusReporter, the backend's ([NewStatusReporter]);
//
//   - *Registration ([NewRegistration]), which registers the application's
//     own instances (see Instance and ProvideInstance);
//
//   - the status endpoint *statushttp.Handler ([NewStatusHandler]).
//
//   - the *metrics.Collector registered on the application's
//     prometheus.Registerer ([RegisterMetrics]; nil without one), to which
//     the registration's health check reports every check.
//
// It consumes, when the application provides them, a Config, an
// hclog.Logger, a health.Check and a prometheus.Registerer, on which it
// registers roster's metrics (RegisterMetrics); it never provides any of
// them.
var Module = fx.Module(ModuleName,
	fx.Provide(
		fx.Annotate(LoadConfig, fx.ParamTags(`optional:"true"`), fx.ResultTags(`name:"roster.config"`)),
		NewStatusReporter, NewRegistration, NewStatusHandler, RegisterMetrics),
	// The collector is made (or not: nil without a Registerer) where
	// Module stands, whether or not anything asks for it.
	fx.Invoke(func(*metrics.Collector) {}),
)

// Result is what a backend's constructor (etcdfx.New, natsfx.New,
// memoryfx.New, fxall.New) provides: one backend under each of its
// interfaces. Its discovery.StatusReporter is provided by
// NewStatusReporter, in Module.
type Result struct {
	fx.Out

	Backend   discovery.Backend
	Registrar discovery.Registrar
	Resolver  discovery.Resolver
}

// ResultOf returns b under each of its interfaces, for a backend's fx
// constructor.
func ResultOf(b discovery.Backend) Result {
	return Result{Backend: b, Registrar: b, Resolver: b}
}

// ErrNoStatus reports that the backend in use does not implement
// discovery.StatusReporter, yet the application asked fx for one.
var ErrNoStatus = errors.New("fxmodule: the backend reports no status")

// NewStatusReporter returns the backend as a discovery.StatusReporter, which
// each of roster's three backends (etcd, NATS, memory) is. For a backend of
// the application's own (UseBackend) that is not one, it fails with an
// error wrapping ErrNoStatus rather than provide a nil StatusReporter. fx calls it only
// for an application that asks for a discovery.StatusReporter, so an
// application that does not ask is unaffected.
func NewStatusReporter(b discovery.Backend) (discovery.StatusReporter, error) {
	s, ok := b.(discovery.StatusReporter)
	if !ok {
		return nil, fmt.Errorf("%w: %T does not implement discovery.StatusReporter", ErrNoStatus, b)
	}
	return s, nil
}

// UseBackend provides, as the discovery.Backend (and Registrar and
// Resolver) that Module uses, the backend that constructor returns: a
// backend of the application's own (see examples/custombackend), or a
// memory backend on a Store shared by the tests of several applications.
// constructor is an ordinary fx constructor whose first result implements
// discovery.Backend, optionally followed by an error; it is provided
// under the name "roster.custom", then under the interfaces.
//
// UseBackend takes the place of a backend module: an application uses one
// of UseBackend, etcdfx.Module, natsfx.Module, memoryfx.Module and
// fxall.Module (fx fails to build a graph with two, naming the type
// provided twice).
//
// The module registers and deregisters the application's instances on
// that backend but does not close it: its constructor owns it, and
// usually appends a stop hook for it (see the example). fx runs that hook
// after the module has deregistered the instances, since the module
// depends on the backend.
func UseBackend(constructor any) fx.Option {
	return fx.Options(
		fx.Provide(fx.Annotate(constructor,
			fx.As(new(discovery.Backend)),
			fx.ResultTags(`name:"roster.custom"`))),
		fx.Provide(fx.Annotate(ResultOf, fx.ParamTags(`name:"roster.custom"`))),
	)
}

// Instance declares instances of the application to register once it has
// started and to deregister before it stops. Each is added to the value
// group "roster.instances"; an invalid one makes fx.New fail with an error
// wrapping discovery.ErrInvalidInstance.
//
// fx runs start hooks in the order it built things, and stop hooks in
// reverse. Instance also asks fx for the *Registration, so the
// registration's hooks are appended where Instance stands among fx.New's
// options: place it after the options that start the application's
// servers, so that it registers after they have started and deregisters
// before they stop. ProvideInstance gets that order from dependencies
// instead.
func Instance(ins ...discovery.Instance) fx.Option {
	opts := make([]fx.Option, 0, len(ins)+1)
	for _, in := range ins {
		opts = append(opts, fx.Supply(fx.Annotated{Group: InstancesGroup, Target: in}))
	}
	return fx.Options(append(opts, fx.Invoke(func(*Registration) {}))...)
}

// ProvideInstance declares an instance of the application built by
// constructor, an fx constructor that returns a discovery.Instance
// (optionally followed by an error): typically one that takes the
// application's server and reads its listening address. Since the
// *Registration depends on the instance, and the instance on the server,
// fx starts the server before it registers the instance and deregisters
// the instance before it stops the server, wherever ProvideInstance stands
// among fx.New's options.
func ProvideInstance(constructor any) fx.Option {
	return fx.Options(
		fx.Provide(fx.Annotate(constructor, fx.ResultTags(`group:"roster.instances"`))),
		fx.Invoke(func(*Registration) {}),
	)
}

// moduleLogger returns the module's logger under the application's.
func moduleLogger(l hclog.Logger) hclog.Logger {
	if l == nil {
		return hclog.New(&hclog.LoggerOptions{Name: LoggerName, Level: hclog.Info})
	}
	return l.Named(LoggerName)
}
