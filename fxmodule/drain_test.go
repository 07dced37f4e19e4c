package fxmodule_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
)

// TestStopDrainsThenDeregisters: with DrainDelay, stopping publishes the
// instance draining (another process's watcher sees it, weight and zone
// kept), deregisters it no sooner than DrainDelay later, and the servers
// stop only once it is gone.
func TestStopDrainsThenDeregisters(t *testing.T) {
	t.Parallel()
	const drain = 300 * time.Millisecond
	store := memory.NewStore()
	other, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	web := discovery.Instance{Service: "web", ID: "w-1", Address: "127.0.0.1:9090", Weight: 200, Zone: "eu-west-1a"}
	var atServerStop []discovery.Instance
	var stoppedAt time.Time
	var reg *fxmodule.Registration
	app := fxtest.New(t,
		fxmodule.Module,
		fx.Supply(fxmodule.Config{DrainDelay: drain}),
		fxmodule.UseBackend(sharedMemory(store)),
		fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.StopHook(func(ctx context.Context) error {
				stoppedAt = time.Now()
				atServerStop, err = other.Resolve(ctx, "web")
				return err
			}))
		}),
		fxmodule.Instance(web),
		fx.Populate(&reg),
	)
	app.RequireStart()
	ctx := ctxFor(t, 10*time.Second)
	if err := reg.Wait(ctx); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	w, err := other.Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if set, err := w.Next(ctx); err != nil || len(set) != 1 || set[0].Condition != discovery.ConditionServing {
		t.Fatalf("before stop: %+v, %v; want w-1 serving", set, err)
	}

	type seen struct {
		set []discovery.Instance
		at  time.Time
	}
	sets := make(chan seen, 2)
	go func() {
		defer close(sets)
		for range 2 {
			set, err := w.Next(ctx)
			if err != nil {
				return
			}
			sets <- seen{set, time.Now()}
		}
	}()
	began := time.Now()
	app.RequireStop()

	first, second := <-sets, <-sets
	if len(first.set) != 1 || first.set[0].Condition != discovery.ConditionDraining || first.set[0].Reason != discovery.DrainReason ||
		first.set[0].Weight != 200 || first.set[0].Zone != "eu-west-1a" {
		t.Fatalf("first change at stop: %+v; want w-1 draining (reason %q), weight and zone kept", first.set, discovery.DrainReason)
	}
	if second.set == nil || len(second.set) != 0 {
		t.Fatalf("second change at stop: %+v; want w-1 gone", second.set)
	}
	if gap := second.at.Sub(first.at); gap < drain-20*time.Millisecond {
		t.Errorf("deregistered %v after draining was seen; want no sooner than DrainDelay %v", gap, drain)
	}
	if len(atServerStop) != 0 {
		t.Errorf("when the server stopped, the registry still held %+v; want it deregistered first", atServerStop)
	}
	if d := stoppedAt.Sub(began); d < drain {
		t.Errorf("the server stopped %v after stop began; want at least DrainDelay %v", d, drain)
	}
}

// TestStopWithoutDrainDelayDeregistersAtOnce: the default publishes no
// draining condition: the watcher's next set is the empty one.
func TestStopWithoutDrainDelayDeregistersAtOnce(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	other, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var reg *fxmodule.Registration
	app := fxtest.New(t,
		fxmodule.Module,
		fx.Supply(fxmodule.Config{Backend: fxmodule.BackendMemory}),
		fxmodule.UseBackend(sharedMemory(store)),
		fxmodule.Instance(discovery.Instance{Service: "web", ID: "w-1", Address: "127.0.0.1:9090"}),
		fx.Populate(&reg),
	)
	app.RequireStart()
	ctx := ctxFor(t, 10*time.Second)
	if err := reg.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := other.Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()
	if set, err := w.Next(ctx); err != nil || len(set) != 0 {
		t.Errorf("after stop: %+v, %v; want the empty set next", set, err)
	}
}

func TestDrainDelayFromEnv(t *testing.T) {
	t.Parallel()
	got, err := fxmodule.ConfigFromEnv(env(map[string]string{"ROSTER_DRAIN_DELAY": "7s"}))
	if err != nil || got.DrainDelay != 7*time.Second {
		t.Errorf("ROSTER_DRAIN_DELAY=7s: DrainDelay %v, %v; want 7s", got.DrainDelay, err)
	}
	for _, bad := range []string{"soon", "-1s"} {
		_, err := fxmodule.ConfigFromEnv(env(map[string]string{"ROSTER_DRAIN_DELAY": bad}))
		if !errors.Is(err, fxmodule.ErrInvalidConfig) || err == nil || !strings.Contains(err.Error(), "ROSTER_DRAIN_DELAY") {
			t.Errorf("ROSTER_DRAIN_DELAY=%s: %v; want ErrInvalidConfig naming the variable", bad, err)
		}
	}
}
