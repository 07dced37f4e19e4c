package backendkit_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

// tinyRegistry is the registry part of a backend: a map of instances by
// service. Watchers and registration states come from backendkit.
type tinyRegistry struct {
	mu       sync.Mutex
	services map[string][]discovery.Instance
	watches  *backendkit.FeedGroup
	board    *backendkit.StatusBoard
}

func newTinyRegistry() *tinyRegistry {
	r := &tinyRegistry{services: make(map[string][]discovery.Instance), board: backendkit.NewStatusBoard()}
	// The first watcher of a service gets the current set at once.
	r.watches = backendkit.NewFeedGroup(func(service string, f *backendkit.Feed) func() {
		f.Publish(r.services[service])
		return nil
	})
	return r
}

func (r *tinyRegistry) Register(in discovery.Instance) error {
	in, err := in.Normalize()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.services[in.Service] = append(r.services[in.Service], in)
	if f, ok := r.watches.Feed(in.Service); ok {
		f.Publish(r.services[in.Service]) // sorted, de-duplicated and copied by the feed
	}
	r.board.Set(discovery.Status{Instance: in, State: discovery.StateRegistered})
	return nil
}

func (r *tinyRegistry) Watch(ctx context.Context, service string) discovery.Watcher {
	r.mu.Lock() // the start hook reads r.services
	defer r.mu.Unlock()
	return r.watches.Watch(ctx, service, nil)
}

func (r *tinyRegistry) Close() {
	r.watches.Close(nil)
	r.board.Close()
}

// Example shows the parts of a tiny backend that backendkit provides:
// watchers that share one Feed per service, and registration states on a
// StatusBoard.
func Example() {
	ctx := context.Background()
	r := newTinyRegistry()
	defer r.Close()

	_ = r.Register(discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.8:8080"})
	w := r.Watch(ctx, "payments")
	defer w.Stop()
	set, _ := w.Next(ctx)
	fmt.Println(len(set), set[0].ID)

	_ = r.Register(discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"})
	set, _ = w.Next(ctx)
	fmt.Println(len(set), set[0].ID, set[1].ID)

	var reporter discovery.StatusReporter = r.board
	for _, st := range reporter.Statuses() {
		fmt.Println(st.Instance.Key(), st.State)
	}
	// Output:
	// 1 p-2
	// 2 p-1 p-2
	// payments/p-1 registered
	// payments/p-2 registered
}
