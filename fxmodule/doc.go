// Package fxmodule plugs roster into a go.uber.org/fx application: its
// Module provides the discovery backend and registers the application's
// own instances for as long as the application runs.
//
//	fx.New(
//		fxmodule.Module,
//		fx.Supply(fxmodule.Config{Endpoints: []string{"etcd-0:2379"}}), // optional
//		fx.Provide(newServer),
//		fx.Invoke(func(*server) {}),
//		fxmodule.Instance(discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}),
//	).Run()
//
// # What the module provides and consumes
//
// [Module] provides discovery.Backend, discovery.Registrar,
// discovery.Resolver and discovery.StatusReporter, all the same backend
// ([NewBackend]), and a [*Registration] ([NewRegistration]). Following
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
// stop the instances leave the registry first, the module waits
// [Config.DrainDelay] for clients to notice, and only then do the servers
// stop.
//
// Start hooks do not wait for the registry: if etcd is down when the
// application starts, the application starts anyway, the backend's
// discovery.StatusReporter reports the registrations as registering and
// then retrying (with attempt, next delay and cause), and they are
// registered as soon as etcd can be reached. Applications that would
// rather not run unregistered set [Config.RequireRegistration]: start
// then waits for the registrations, up to [Config.Timeout], and fails
// with an error naming the instance. (One exception: with
// [Config.Username] set, the etcd client logs in while the backend is
// built, so building the application fails if etcd cannot be reached
// within Config.Timeout.)
//
// # Configuration
//
// Every field of [Config] has a default used when it is left zero. The
// environment variables are read only when the application supplies no
// Config (or a zero one); unset or empty variables keep the default.
//
//	Config field         environment variable  default
//	Backend              ROSTER_BACKEND        "etcd" (or "memory")
//	Endpoints            ROSTER_ENDPOINTS      127.0.0.1:2379 (comma-separated list)
//	Prefix               ROSTER_PREFIX         /roster/services
//	TTL                  ROSTER_TTL            15s (whole seconds)
//	CACert               ROSTER_CACERT         system roots (PEM file)
//	Cert                 ROSTER_CERT           no client certificate (PEM file, with Key)
//	Key                  ROSTER_KEY            none (PEM file, with Cert)
//	Username             ROSTER_USERNAME       no authentication
//	Password             ROSTER_PASSWORD       none (with Username)
//	Timeout              ROSTER_TIMEOUT        5s (dial, request and deregistration timeout)
//	TLS                  -                     built from CACert, Cert and Key
//	Retry                -                     1s doubling to 30s, 20% jitter
//	RequireRegistration  -                     false: start does not wait for the registry
//	DrainDelay           -                     0: stop right after deregistering
//
// Durations are Go durations ("15s", "1m30s"). A malformed variable makes
// fx.New fail with an error wrapping [ErrInvalidConfig] that names the
// variable.
//
// # Without fx
//
// NewBackend and NewRegistration are ordinary functions of their Params
// structs: call them with a nil Lifecycle, then Registration.Start and
// Registration.Stop yourself, and close Result.Backend when done.
package fxmodule
