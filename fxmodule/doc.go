// Package fxmodule plugs roster into a go.uber.org/fx application: its
// Module registers the application's own instances for as long as the
// application runs, on the discovery backend that a backend's module
// provides.
//
// # Using the fx module
//
// An application adds two modules: [Module], the backend-free core, and
// the module of the backend it uses, so that it links that backend's
// client and no other registry's:
//
//	fx.New(
//		fxmodule.Module,
//		etcdfx.Module, // or natsfx.Module, memoryfx.Module
//		fx.Supply(etcd.Config{Endpoints: []string{"etcd-0:2379"}}), // optional: else ROSTER_* variables
//		fx.Provide(newServer),
//		fx.Invoke(func(*server) {}),
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
//
// An application whose operators choose the backend at run time adds
// fxall.Module instead of a backend's module: it builds the backend that
// [Config.Backend] or ROSTER_BACKEND names (etcd, nats or memory), and the
// application then links every backend's client (fx's module guide allows
// one such explicit "kitchen sink").
//
//	fx.New(
//		fxmodule.Module,
//		fxall.Module, // ROSTER_BACKEND=nats ROSTER_ENDPOINTS=nats://nats-0:4222
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
//
// A backend of the application's own plugs in with [UseBackend], in place
// of a backend's module. Use exactly one of these: without any, fx.New
// fails with fx's "missing type: discovery.Backend"; with two, with fx's
// "already provided".
//
// The backends' modules live in packages under fxmodule (etcdfx, natsfx,
// memoryfx, fxall) rather than in the backends' own packages, so that a
// program that uses a backend without fx links no fx, and a backend's
// package holds no fx code.
//
// # What the modules provide and consume
//
// A backend's module provides discovery.Backend, discovery.Registrar and
// discovery.Resolver, all the same backend (a [Result]), and closes the
// backend at stop. [Module] provides the [Config] it runs with, loaded
// once ([LoadConfig]) and named "roster.config" ([ConfigName]), which the
// registration and the backends' modules consume; the backend as a
// discovery.StatusReporter ([NewStatusReporter]; never nil: asking for one
// with a backend that is not one fails with [ErrNoStatus]); a
// [*Registration] ([NewRegistration]); and the status endpoint
// ([NewStatusHandler]). Following fx's module conventions they consume, but
// never provide, what belongs to the application, each of them optional:
//
//   - a [Config] (fx.Supply(fxmodule.Config{...})). Without one, or with a
//     zero Config, the module reads the ROSTER_* environment variables
//     ([ConfigFromEnv]). To start from the environment and change a few
//     fields, call ConfigFromEnv(os.LookupEnv) yourself and supply the
//     result.
//   - the backend's own Config: an etcd.Config (etcdfx) or a nats.Config
//     (natsfx); without one, the backend's module reads it from the
//     environment with the backend's ConfigFromEnv. memoryfx takes a
//     *memory.Store, to share one among several applications.
//   - an hclog.Logger: the backend and the module log under it, as
//     "roster.etcd" (or "roster.nats") and "roster.fx".
//   - a *clientv3.Client: etcdfx uses it (etcd.NewWithClient) instead of
//     dialing, and never closes it.
//   - a health.Check, a prometheus.Registerer: see below.
//
// A backend a module builds is closed by that module at stop (the etcd
// backend then revokes its lease, so every instance leaves at once); an
// application-provided backend or client is left to its owner.
//
// # Registering the application's instances
//
// [Instance] and [ProvideInstance] add instances to the value group
// "roster.instances" and ask fx for the [*Registration], whose start hook
// registers them and whose stop hook deregisters them. fx runs start hooks
// in the order it built things and stop hooks in reverse, so the
// Registration's hooks must be appended after the application's servers':
// place Instance after the options that start the servers, or let the
// instance's constructor depend on the server with ProvideInstance. Then,
// at start, the servers listen before the instances are published, and at
// stop the instances leave the registry first: with [Config.DrainDelay]
// they are published draining (discovery.ConditionDraining: clients stop
// sending them new work), the module waits DrainDelay, then deregisters
// them; and only then do the servers stop.
//
// Start hooks do not wait for the registry: if etcd (or NATS) is down
// when the application starts, the application starts anyway, the backend's
// discovery.StatusReporter reports the registrations as registering and
// then retrying (with attempt, next delay and cause), and they are
// registered as soon as the registry can be reached. Applications that would
// rather not run unregistered set [Config.RequireRegistration]: start
// then waits for the registrations, up to [Config.Timeout], and fails
// with an error naming the instance. (One exception: with
// etcd.Config.Username set, the etcd client logs in while the backend is
// built, so building the application fails if etcd cannot be reached
// within the dial timeout: etcd.Config.DialTimeout, or Config.Timeout.)
//
// # Configuration
//
// Every field of [Config] has a default used when it is left zero. Config
// holds the module's own settings; each backend's are that backend's
// Config (etcd.Config, nats.Config, with their own defaults, checks and
// table of variables in their package documentation), whose DialTimeout
// and RequestTimeout default to [Config.Timeout] and Retry to
// [Config.Retry]. The environment variables are read only for a Config the
// application does not supply (or supplies zero): the module's by
// [ConfigFromEnv], the backend's by its ConfigFromEnv (etcd.ConfigFromEnv,
// nats.ConfigFromEnv) in the backend's module; unset or empty variables
// keep the default. The variables every networked backend shares (package
// backends names them: ROSTER_ENDPOINTS, ROSTER_TTL, ROSTER_TIMEOUT, the
// TLS files, the credentials) mean the same for each.
//
// The variables, each with the Config field it fills and its default, are
// listed once, in the repository's docs/configuration.md
// (https://github.com/roster-sd/roster/blob/main/docs/configuration.md),
// which tests check against the constants of package backends and of this
// package. Config's own fields: Backend (ROSTER_BACKEND) is what
// fxall.Module builds, and a backend's module refuses another backend's
// name; Timeout (ROSTER_TIMEOUT, default 5s) bounds registration with
// RequireRegistration and deregistration at stop, and is the default of the
// backend's timeouts; Retry (1s doubling to 30s, 20% jitter) paces the
// module's registration attempts and is the default of the backend's Retry;
// RequireRegistration (false) makes start wait for the registry; DrainDelay
// (ROSTER_DRAIN_DELAY, 0) is how long the instances are published draining
// at stop before they are deregistered (0: deregister at once); Weight
// (ROSTER_WEIGHT, 1 to 10000) and Zone (ROSTER_ZONE) are given to every
// instance declared without its own (0 and "": the instances'); Health
// (ROSTER_HEALTH_HTTP, ROSTER_HEALTH_GRPC, ROSTER_HEALTH_TCP and the
// ROSTER_HEALTH_* probe parameters) gates the instances on a check.
//
// Durations are Go durations ("15s", "1m30s"). A malformed variable makes
// fx.New fail with an error wrapping [ErrInvalidConfig] that names the
// variable; a backend's module wraps the backend's own ErrInvalidConfig
// too. The etcd backend rejects bad settings (an unknown endpoint scheme,
// TLS files with an http:// endpoint, an unreadable PEM file) with
// etcd.ErrInvalidConfig naming the field or the endpoint, and logs a
// warning when a password would travel without TLS.
//
// # Metrics and the status endpoint
//
// When the application provides a prometheus.Registerer, the module
// registers roster's metrics on it ([RegisterMetrics], a metrics.Collector
// of the backend: registrations by state, transitions, recovery time, the
// backend's connection, retries and lease) and unregisters them at stop.
// Without one it registers nothing, on no registry: it never touches the
// global registry unless the application provides
// prometheus.DefaultRegisterer itself.
//
// The module also provides the status endpoint, a *statushttp.Handler
// ([NewStatusHandler]), for the application to mount on its mux and point
// its readiness or startup probe at: 200 once every instance has been
// registered, and through registry outages afterwards; 503 before the
// first registration and once the instances are deregistered at stop (see
// package statushttp for the rule and why).
//
//	fx.Provide(func() prometheus.Registerer { return registry }),
//	fx.Invoke(func(mux *http.ServeMux, status *statushttp.Handler) {
//		mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
//		mux.Handle("/status", status)
//	}),
//
// # Without fx
//
// The constructors are ordinary functions: call [LoadConfig], then a
// backend's New (etcdfx.New, natsfx.New, memoryfx.New or fxall.New) and
// [NewRegistration] with their Params, a nil Lifecycle and the loaded
// Config, then Registration.Start and Registration.Stop yourself, and
// close Result.Backend when done.
package fxmodule
