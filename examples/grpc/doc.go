// Command grpc shows a gRPC client that dials "roster:///greeter" and
// follows the greeter servers as they come and go.
//
// Each greeter server registers itself in etcd through roster's etcd
// backend. The client resolves the service with grpcresolver (passed with
// grpc.WithResolvers, nothing registered globally) and spreads its calls
// with round_robin. The command starts two servers, calls, starts a third,
// calls, stops one (it leaves the registry first, then stops serving),
// and calls again, printing which server answered each call.
//
//	go run ./examples/grpc
//	go run ./examples/grpc -endpoints 127.0.0.1:2379
//
// See README.md beside this file.
package main
