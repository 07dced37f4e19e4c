package memory_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
)

// Two Backends on one Store behave like two processes sharing a registry:
// what the server registers, the client resolves and watches.
func ExampleBackend() {
	ctx := context.Background()
	store := memory.NewStore()
	server, err := memory.New(store)
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	client, err := memory.New(store)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	w, err := client.Watch(ctx, "payments")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	set, _ := w.Next(ctx)
	fmt.Println("watching:", len(set), "instances")

	_ = server.Register(ctx, discovery.Instance{
		Service: "payments", ID: "p-1", Address: "10.0.0.7:8080",
		Metadata: map[string]string{"zone": "a"},
	})
	// An empty ID is derived from the address.
	_ = server.Register(ctx, discovery.Instance{Service: "payments", Address: "10.0.0.8:8080"})

	set, _ = client.Resolve(ctx, "payments")
	for _, in := range set {
		fmt.Println(in.ID, in.Address, in.Metadata)
	}
	set, _ = w.Next(ctx) // both registrations, coalesced
	fmt.Println("watching:", len(set), "instances")

	st, _ := server.Status("payments", "p-1")
	fmt.Println(st)
	// Output:
	// watching: 0 instances
	// 10.0.0.8-8080 10.0.0.8:8080 map[]
	// p-1 10.0.0.7:8080 map[zone:a]
	// watching: 2 instances
	// payments/p-1 registered
}

// Expire simulates a registry dropping a registration, as when a lease
// expires: the owner reports it lost, then restores it.
func ExampleStore_Expire() {
	ctx := context.Background()
	store := memory.NewStore()
	b, err := memory.New(store, memory.WithRestoreDelay(10*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	_ = b.Register(ctx, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"})
	sub := b.SubscribeStatus()
	defer sub.Stop()
	st, _ := sub.Next(ctx)
	fmt.Println(st)

	store.Expire("payments", "p-1")
	st, _ = b.Status("payments", "p-1")
	fmt.Println(st)
	for st.State != discovery.StateRegistered {
		st, _ = sub.Next(ctx)
	}
	fmt.Println(st)
	// Output:
	// payments/p-1 registered
	// payments/p-1 lost: memory: payments/p-1 dropped from the store: memory: registration expired
	// payments/p-1 registered
}
