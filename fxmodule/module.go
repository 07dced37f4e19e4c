package fxmodule

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
)

// Names used in the fx graph. Struct tags cannot refer to constants, so
// they are spelled out in the tags of Params and RegistrationParams too.
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

// Module provides discovery.Backend, discovery.Registrar and
// discovery.Resolver (built by NewBackend), discovery.StatusReporter (the
// same backend, see NewStatusReporter), *Registration (built by
// NewRegistration), which registers the application's own instances (see
// Instance and ProvideInstance), and the status endpoint
// *statushttp.Handler (NewStatusHandler).
//
// It consumes, when the application provides them, a Config, an
// hclog.Logger, a *clientv3.Client, a backend named "roster.custom"
// (see UseBackend) and a prometheus.Registerer, on which it registers
// roster's metrics (RegisterMetrics); it never provides any of them.
var Module = fx.Module(ModuleName,
	fx.Provide(NewBackend, NewStatusReporter, NewRegistration),
	fx.Provide(NewStatusHandler),
	fx.Invoke(RegisterMetrics),
)

// Params are the inputs of NewBackend. Every field but Lifecycle is
// optional.
type Params struct {
	fx.In

	// Lifecycle receives the hook that closes a backend NewBackend built.
	// Outside fx it may be nil; closing Result.Backend is then the
	// caller's job.
	Lifecycle fx.Lifecycle

	// Config configures the backend. A zero Config (none supplied) means
	// ConfigFromEnv(os.LookupEnv).
	Config Config `optional:"true"`
	// Custom is the application's own backend, used instead of building
	// one; NewBackend does not close it. See UseBackend.
	Custom discovery.Backend `name:"roster.custom" optional:"true"`
	// Logger is the application's logger. Default: an hclog logger
	// writing to stderr at info level.
	Logger hclog.Logger `optional:"true"`
	// Client is an etcd client the application owns. With the etcd
	// backend, NewBackend uses it (etcd.NewWithClient) instead of
	// dialing, and never closes it.
	Client *clientv3.Client `optional:"true"`
}

// Result is what NewBackend provides: one backend under each of its
// interfaces. Its discovery.StatusReporter is provided by NewStatusReporter.
type Result struct {
	fx.Out

	Backend   discovery.Backend
	Registrar discovery.Registrar
	Resolver  discovery.Resolver
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

// NewBackend returns the backend the application uses: p.Custom when the
// application provides one, or else the etcd or memory backend that the
// Config asks for. A backend it builds is closed by a stop hook on
// p.Lifecycle (after the instances have been deregistered, since
// Registration depends on it); an application-provided backend and client
// are left to their owner.
//
// An invalid Config or environment gives an error wrapping
// ErrInvalidConfig (or the backend's own ErrInvalidConfig) that names the
// field or variable. Building the etcd backend does not wait for etcd to
// be reachable, except with Username set: the etcd client logs in while
// it is being built.
func NewBackend(p Params) (Result, error) {
	b, owned, err := newBackend(p)
	if err != nil {
		return Result{}, err
	}
	if owned && p.Lifecycle != nil {
		p.Lifecycle.Append(fx.StopHook(b.Close))
	}
	return Result{Backend: b, Registrar: b, Resolver: b}, nil
}

func newBackend(p Params) (discovery.Backend, bool, error) {
	if p.Custom != nil {
		return p.Custom, false, nil
	}
	cfg, err := resolveConfig(p.Config)
	if err != nil {
		return nil, false, err
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, false, err
	}
	switch cfg.Backend {
	case BackendMemory:
		b, err := memory.New(nil, memory.WithRetry(cfg.Retry))
		if err != nil {
			return nil, false, fmt.Errorf("fxmodule: memory backend: %w", err)
		}
		return b, true, nil
	case BackendNATS:
		ncfg := cfg.natsConfig()
		if ncfg.Logger == nil {
			ncfg.Logger = p.Logger // nil: the backend's default
		}
		b, err := nats.New(ncfg)
		if err != nil {
			return nil, false, fmt.Errorf("fxmodule: nats backend: %w", err)
		}
		return b, true, nil
	default:
		ecfg := cfg.etcdConfig()
		if ecfg.Logger == nil {
			ecfg.Logger = p.Logger // nil: the backend's default
		}
		var b *etcd.Backend
		var err error
		if p.Client != nil {
			b, err = etcd.NewWithClient(p.Client, ecfg)
		} else {
			b, err = etcd.New(ecfg)
		}
		if err != nil {
			return nil, false, fmt.Errorf("fxmodule: etcd backend: %w", err)
		}
		return b, true, nil
	}
}

// UseBackend makes the module use the backend that constructor returns
// instead of building one: a backend of the application's own (see
// examples/custombackend), or a memory backend on a Store shared by the
// tests of several applications. constructor is an ordinary fx
// constructor whose first result implements discovery.Backend, optionally
// followed by an error; it is provided under the name "roster.custom".
//
// The module registers and deregisters the application's instances on
// that backend but does not close it: its constructor owns it, and
// usually appends a stop hook for it (see the example). fx runs that hook
// after the module has deregistered the instances, since the module
// depends on the backend.
func UseBackend(constructor any) fx.Option {
	return fx.Provide(fx.Annotate(constructor,
		fx.As(new(discovery.Backend)),
		fx.ResultTags(`name:"roster.custom"`)))
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
