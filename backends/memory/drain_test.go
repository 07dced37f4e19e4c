package memory_test

import (
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/draintest"
)

// TestCloseDrainsFirst: with WithDrainOnClose, Close publishes the
// instance draining, which another Backend's watcher sees before the
// removal, and waits the drain time; without it, the removal comes first.
func TestCloseDrainsFirst(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	other := newBackend(t, store)
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	b, err := memory.New(store, memory.WithDrainOnClose(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	draintest.CloseDrains(t, draintest.Watch(t, other, in), in, 200*time.Millisecond, b.Close)

	// Without the option: gone at once, never draining.
	b, err = memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Register(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	w := draintest.Watch(t, other, in)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if set, err := w.Next(ctx(t)); err != nil || len(set) != 0 {
		t.Errorf("after Close without a drain, the watcher saw %+v, %v; want the removal", set, err)
	}
}

// TestCloseDrainInAnOutageIsBounded: with the Store unavailable, Close
// gives up the drain at its bound and removes the instance anyway.
func TestCloseDrainInAnOutageIsBounded(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	b, err := memory.New(store, memory.WithDrainOnClose(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	if err := b.Register(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	store.SetAvailable(false)
	if err := draintest.CloseWithin(t, 5*time.Second, b.Close); err != nil {
		t.Errorf("Close: %v; want nil", err)
	}
	store.SetAvailable(true)
	other := newBackend(t, store)
	if set, err := other.Resolve(ctx(t), "payments"); err != nil || len(set) != 0 {
		t.Errorf("after Close: %+v, %v; want no instance", set, err)
	}
}

func TestWithDrainOnCloseNegative(t *testing.T) {
	t.Parallel()
	if _, err := memory.New(memory.NewStore(), memory.WithDrainOnClose(-time.Second)); !errors.Is(err, memory.ErrInvalidOption) {
		t.Errorf("New(WithDrainOnClose(-1s)) = %v; want ErrInvalidOption", err)
	}
}
