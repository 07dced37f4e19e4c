package memory_test

import (
	"context"
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
)

// operatorHarness is a fresh Store; every backend is a handle on it.
type operatorHarness struct{ store *memory.Store }

func (h operatorHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	return memory.New(h.store)
}

func (operatorHarness) Close() {}

func TestOperatorView(t *testing.T) {
	discoverytest.RunOperatorView(t, func(context.Context, *testing.T) (discoverytest.Harness, error) {
		return operatorHarness{store: memory.NewStore()}, nil
	})
}
