package cache_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
)

func Example() {
	ctx := context.Background()
	backend, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	backend.Register(ctx, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"})
	backend.Register(ctx, discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"})

	// Serve the last known set for up to a minute when the registry is
	// unreachable, and do not believe "everything left" before it lasted
	// five seconds.
	c, err := cache.New(backend, cache.WithStaleOnError(time.Minute), cache.WithEmptyHold(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The first Resolve starts the watch; the next ones answer from memory.
	for range 3 {
		set, err := c.Resolve(ctx, "payments")
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(len(set), set[0].ID, set[1].Address)
	}

	set, age, stale, ok := c.Snapshot("payments")
	fmt.Println(len(set), age, stale, ok)
	// Output:
	// 2 p-1 10.0.0.8:8080
	// 2 p-1 10.0.0.8:8080
	// 2 p-1 10.0.0.8:8080
	// 2 0s false true
}

// View suits a per-request pick: it reads the shared set without copying
// it, and copies only the address it keeps.
func ExampleResolver_View() {
	ctx := context.Background()
	backend, err := memory.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()
	backend.Register(ctx, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"})
	backend.Register(ctx, discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"})
	c, err := cache.New(backend)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var next int // round-robin position; a real picker would use an atomic counter
	for range 3 {
		var addr string
		err := c.View(ctx, "payments", func(set []discovery.Instance) {
			if len(set) > 0 {
				addr = set[next%len(set)].Address
				next++
			}
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(addr)
	}
	// Output:
	// 10.0.0.7:8080
	// 10.0.0.8:8080
	// 10.0.0.7:8080
}
