// Package fleetsim simulates a fleet of roster processes in one OS
// process, against a registry cluster, and measures what each process
// and the registry pay: to register, to hold and watch, and to recover
// from a fault (a cut of the network, a restart of the whole cluster, of
// each member in turn, or of the leader alone). It is the engine of
// roster bench, which parses the flags and prints the Report.
//
// Each simulated process is a real Backend with its own client and
// connection, driven only through roster's interfaces
// (discovery.Backend and discovery.StatusReporter), so the same
// simulation runs on every backend the command line can select. What
// differs per backend lives in a small part of its own (etcd.go,
// nats.go): starting the embedded cluster, creating a process's backend
// with its connection attempts and requests counted client side (etcd:
// a gRPC dialer and stats handler; NATS: a relay per process in front of
// each node that reads the protocol), faulting the cluster, telling when
// it is usable again, and reading the server's own counters (etcd's).
package fleetsim
