// Command fxapp is an fx service that registers itself with roster's fx
// module and watches its peers.
//
// Each replica is a complete fx application (see newReplica): an HTTP
// server on a free port, fxmodule.Module with the etcd backend's module
// etcdfx.Module (fxall.Module would select the backend by name), the
// instance built from the server's address with fxmodule.ProvideInstance,
// and a component that watches the other replicas. To keep the demo self-contained, the command
// runs several replicas in one process, against an etcd it starts itself
// (or against yours with -endpoints), starts them one by one, calls each
// through the registry, serves until Ctrl+C (printing each replica's
// address, for curl), and then stops them one by one. -once stops them as
// soon as they have been called, without waiting for Ctrl+C.
//
//	go run ./examples/fxapp
//	go run ./examples/fxapp -endpoints 127.0.0.1:2379
//
// See README.md beside this file.
package main
