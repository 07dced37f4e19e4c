package mapbackend_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
	"github.com/roster-sd/roster/examples/custombackend/mapbackend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is a fresh Registry; every backend is a handle on it.
type harness struct{ reg *mapbackend.Registry }

func (h harness) MakeBackend(context.Context) (discovery.Backend, error) {
	return h.reg.NewBackend(), nil
}

func (h harness) Close() {}

// README:conformance

// TestConformance is all the testing the backend's core semantics need:
// the suite states roster's contract as code.
func TestConformance(t *testing.T) {
	discoverytest.Run(t, func(context.Context, *testing.T) (discoverytest.Harness, error) {
		return harness{reg: mapbackend.NewRegistry()}, nil
	}, discoverytest.Capabilities{Status: true, Conflict: true})
}

// README:end

// README:operatorview

// TestOperatorView runs the conformance subtests of the optional
// discovery.OperatorView, on the same harness.
func TestOperatorView(t *testing.T) {
	discoverytest.RunOperatorView(t, func(context.Context, *testing.T) (discoverytest.Harness, error) {
		return harness{reg: mapbackend.NewRegistry()}, nil
	})
}

// README:end
