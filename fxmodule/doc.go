// Package fxmodule plugs roster into a go.uber.org/fx application: its
// Module provides the discovery backend and registers the application's
// own instances for as long as the application runs.
//
//	fx.New(
//		fxmodule.Module,
//		fx.Supply(fxmodule.Config{Etcd: etcd.Config{Endpoints: []string{"etcd-0:2379"}}}), // optional
//		fx.Provide(newServer),
//		fx.Invoke(func(*server) {}),
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
//
// # What the module provides and consumes
//
// [Module] provides discovery.Backend, discovery.Registrar and
// discovery.Resolver, all the same backend ([NewBackend]), the backend as
// a discovery.StatusReporter ([NewStatusReporter]; never nil: asking for
// one with a backend that is not one fails with [ErrNoStatus]), and a
// [*Registration] ([NewRegistration]). Following
// fx's module conventions it consumes, but never provides, what belongs to
// the application, each of them optional:
//
//   - a [Config] (fx.Supply(fxmodule.Config{...})). Without one, or with a
//     zero Config, the module reads the ROSTER_* environment variables
//     ([ConfigFromEnv]). To start from the environment and change a few
//     fields, call ConfigFromEnv(os.LookupEnv) yourself and supply the
//     result.
//   - an hclog.Logger: the backend and the module log under it, as
//     "roster.etcd" and "roster.fx".
//   - a *clientv3.Client: the etcd backend uses it (etcd.NewWithClient)
//     instead of dialing, and never closes it.
//   - a backend of its own, named "roster.custom" ([UseBackend]): the
//     module uses it instead of building one, whatever the Config says.
//     This is how a custom backend, or a memory backend shared by tests,
//     plugs in.
//
// A backend the module builds is closed by the module at stop (the etcd
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
// Config.Etcd.Username set, the etcd client logs in while the backend is
// built, so building the application fails if etcd cannot be reached
// within the dial timeout: Config.Etcd.DialTimeout, or Config.Timeout.)
//
// # Configuration
//
// Every field of [Config] has a default used when it is left zero. The
// module's own settings are Config's fields; the etcd backend's are
// [Config.Etcd], an etcd.Config with the etcd backend's own defaults and
// checks, and the NATS backend's are [Config.NATS], a nats.Config. The
// environment variables are read only when the application supplies no
// Config (or a zero one): [EnvBackend] by [ConfigFromEnv], the others by
// the selected backend's ConfigFromEnv (etcd.ConfigFromEnv or
// nats.ConfigFromEnv); unset or empty variables keep the default. The
// variables every networked backend shares (package backends names them)
// mean the same for each.
//
// The variables, each with the Config field it fills and its default, are
// listed once, in the repository's docs/configuration.md
// (https://github.com/roster-sd/roster/blob/main/docs/configuration.md),
// which a test checks against the constants of package backends. Config's
// own fields: Timeout (ROSTER_TIMEOUT, default 5s) bounds registration
// with RequireRegistration and deregistration at stop, and is the default
// of the backends' timeouts; Retry (1s doubling to 30s, 20% jitter) paces
// the module's registration attempts and is the default of the backends'
// Retry; RequireRegistration (false) makes start wait for the registry;
// DrainDelay (ROSTER_DRAIN_DELAY, 0) is how long the instances are
// published draining at stop before they are deregistered (0: deregister at
// once); Health (ROSTER_HEALTH_HTTP, ROSTER_HEALTH_GRPC, ROSTER_HEALTH_TCP and
// the ROSTER_HEALTH_* probe parameters) gates the instances on a check.
//
// Durations are Go durations ("15s", "1m30s"). A malformed variable makes
// fx.New fail with an error wrapping [ErrInvalidConfig] that names the
// variable. Each backend rejects bad settings with its own
// ErrInvalidConfig. The etcd backend rejects bad settings (an unknown endpoint
// scheme, TLS files with an http:// endpoint, an unreadable PEM file) with
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
// NewBackend and NewRegistration are ordinary functions of their Params
// structs: call them with a nil Lifecycle, then Registration.Start and
// Registration.Stop yourself, and close Result.Backend when done.
package fxmodule
