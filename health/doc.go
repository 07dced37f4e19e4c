// Package health gates the registration of instances on a health check,
// for any discovery.Registrar: the memory, etcd and NATS backends and a
// user's own all get it, since it only calls Register and Deregister.
//
// A Registrar from New wraps a backend. An instance registered through it
// is published at once, in discovery.ConditionNotReady (visible to
// Resolve and Watch, not routed), and moves to discovery.ConditionServing
// once its Check has passed Config.SuccessThreshold times in a row; after
// Config.FailureThreshold failures in a row it goes back to not ready,
// with the check's output as its Reason. Each move is one update in place
// of the instance in the registry. The parameters are those of Kubernetes
// probes: InitialDelay, Period, Timeout, SuccessThreshold and
// FailureThreshold.
//
// Checks: GRPC (the standard grpc.health.v1 service), HTTP (a GET that
// passes on 2xx), TCP (a connection that opens) and CheckFunc (any Go
// function).
//
// WithObserver reports every check's outcome and duration, as
// metrics.Collector.ObserveCheck takes them (roster_health_checks_total,
// roster_health_check_duration_seconds).
//
// A failing check is not a registration fault: the instance stays
// registered (and its backend's StatusReporter says so), only its
// Condition changes. An instance registered with
// discovery.ConditionDraining stays draining whatever its check says (see
// discovery.Drain).
package health
