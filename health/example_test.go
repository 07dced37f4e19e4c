package health_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/health"
)

func ExampleNew() {
	ctx := context.Background()
	backend, err := memory.New(memory.NewStore())
	if err != nil {
		panic(err)
	}
	defer backend.Close()

	// In a real service: health.HTTP("http://127.0.0.1:8080/healthz"),
	// health.DialGRPC("127.0.0.1:9090", ""), or health.TCP(addr).
	var warm atomic.Bool
	check := health.CheckFunc(func(context.Context) error {
		if !warm.Load() {
			return errors.New("cache warming up")
		}
		return nil
	})
	gate, err := health.New(backend, check, health.Config{Period: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer gate.Close()

	w, err := backend.Watch(ctx, "payments")
	if err != nil {
		panic(err)
	}
	defer w.Stop()
	next := func(c discovery.Condition) discovery.Instance {
		for {
			set, err := w.Next(ctx)
			if err != nil {
				panic(err)
			}
			if len(set) == 1 && set[0].Condition == c {
				return set[0]
			}
		}
	}

	if err := gate.Register(ctx, discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}); err != nil {
		panic(err)
	}
	fmt.Println("published:", next(discovery.ConditionNotReady).Condition)
	warm.Store(true)
	fmt.Println("then:", next(discovery.ConditionServing).Condition)
	// Output:
	// published: not_ready
	// then: serving
}
