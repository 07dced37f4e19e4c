package grpcresolver_test

import (
	"context"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/discovery/grpcresolver"
)

// Dial a service by name and spread the calls over its live instances.
func Example() {
	ctx := context.Background()
	backend, err := memory.New(nil) // or an etcd backend
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	// Elsewhere, the servers register themselves.
	backend.Register(ctx, discovery.Instance{Service: "greeter", ID: "g-1", Address: "10.0.0.7:50051"})
	backend.Register(ctx, discovery.Instance{Service: "greeter", ID: "g-2", Address: "10.0.0.8:50051"})

	// A cache lets every ClientConn of the process share one watch per
	// service, and keeps the last known instances through registry
	// outages.
	resolver, err := cache.New(backend, cache.WithStaleOnError(0))
	if err != nil {
		log.Fatal(err)
	}
	defer resolver.Close()

	builder, err := grpcresolver.NewBuilder(resolver)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("roster:///greeter",
		grpc.WithResolvers(builder),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close() // also stops the resolver's watch

	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(resp.GetStatus())
}
