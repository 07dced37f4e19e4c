package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
	"github.com/roster-sd/roster/retry"
)

// harness is a fresh Store; every backend is a handle on it.
type harness struct{ store *memory.Store }

func (h *harness) MakeBackend(context.Context) (discovery.Backend, error) {
	return memory.New(h.store, memory.WithRetry(retry.Policy{Base: time.Millisecond, Max: 10 * time.Millisecond}))
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	discoverytest.Run(t, func(context.Context, *testing.T) (discoverytest.Harness, error) {
		return &harness{store: memory.NewStore()}, nil
	}, discoverytest.Capabilities{Status: true, Conflict: true})
}
