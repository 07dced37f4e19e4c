package backendkit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

func ExampleFeed() {
	ctx := context.Background()
	feed := backendkit.NewFeed()
	w := feed.NewWatcher(context.Background(), func() { fmt.Println("last watcher gone") })

	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"}
	p3 := discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.9:8080"}

	feed.Publish([]discovery.Instance{p2, p1})
	set, _ := w.Next(ctx)
	fmt.Println(len(set), set[0].ID, set[1].ID)

	// The watcher is slow: it gets only the newest of these sets.
	feed.Publish([]discovery.Instance{p1})
	feed.Publish([]discovery.Instance{p1, p3})
	set, _ = w.Next(ctx)
	fmt.Println(len(set), set[0].ID, set[1].ID)

	w.Stop()
	_, err := w.Next(ctx)
	fmt.Println(err)
	// Output:
	// 2 p-1 p-2
	// 2 p-1 p-3
	// last watcher gone
	// watcher stopped: discovery: closed
}

func ExampleStatusBoard() {
	ctx := context.Background()
	board := backendkit.NewStatusBoard()
	defer board.Close()
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}

	board.Set(discovery.Status{Instance: in, State: discovery.StateRegistering})
	sub := board.SubscribeStatus()
	defer sub.Stop()

	st, _ := sub.Next(ctx) // the current status first
	fmt.Println(st)

	board.Set(discovery.Status{Instance: in, State: discovery.StateRetrying,
		Attempt: 1, RetryIn: time.Second, Err: errors.New("connection refused")})
	st, _ = sub.Next(ctx)
	fmt.Println(st)

	board.Set(discovery.Status{Instance: in, State: discovery.StateRegistered})
	st, _ = sub.Next(ctx)
	fmt.Println(st)

	st, _ = board.Status("payments", "p-1")
	fmt.Println("ready:", st.State == discovery.StateRegistered)

	_, err := board.Status("payments", "p-9")
	fmt.Println(err)
	// Output:
	// payments/p-1 registering
	// payments/p-1 retrying (attempt 1, next in 1s): connection refused
	// payments/p-1 registered
	// ready: true
	// discovery: instance not registered: payments/p-9
}

func ExampleFeedGroup() {
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"}
	registry := map[string][]discovery.Instance{"payments": {p1}}

	group := backendkit.NewFeedGroup(func(service string, f *backendkit.Feed) func() {
		fmt.Println("first watcher of", service)
		f.Publish(registry[service])
		return func() { fmt.Println("last watcher of", service, "gone") }
	})
	ctx := context.Background()
	w1 := group.Watch(context.Background(), "payments", nil)
	w2 := group.Watch(context.Background(), "payments", nil) // shares the feed: no second start
	set, _ := w1.Next(ctx)
	fmt.Println(len(set), set[0].ID)

	// The registry changes: the backend publishes on the live feed.
	registry["payments"] = append(registry["payments"], p2)
	if f, ok := group.Feed("payments"); ok {
		f.Publish(registry["payments"])
	}
	set, _ = w2.Next(ctx)
	fmt.Println(len(set), set[0].ID, set[1].ID)

	w1.Stop()
	w2.Stop()
	_, live := group.Feed("payments")
	fmt.Println("feed live:", live)
	group.Close(nil)
	// Output:
	// first watcher of payments
	// 1 p-1
	// 2 p-1 p-2
	// last watcher of payments gone
	// feed live: false
}
