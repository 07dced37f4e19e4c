package fxall_test

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/fxall"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// New works without fx, and builds the backend the Config names; an
// unknown name is refused with ErrInvalidConfig naming it.
func TestNewWithoutFx(t *testing.T) {
	t.Parallel()
	res, err := fxall.New(fxall.Params{Module: fxmodule.Config{Backend: fxmodule.BackendMemory}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Backend.(*memory.Backend); !ok {
		t.Errorf("backend is %T; want *memory.Backend", res.Backend)
	}
	if err := res.Backend.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	_, err = fxall.New(fxall.Params{Module: fxmodule.Config{Backend: "zookeeper"}})
	if !errors.Is(err, fxmodule.ErrInvalidConfig) || !strings.Contains(err.Error(), `"zookeeper"`) {
		t.Errorf("New with Backend zookeeper: %v; want ErrInvalidConfig naming it", err)
	}
}

// UseBackend takes the place of a backend module: with fxall.Module too,
// fx refuses the graph (two providers of discovery.Backend) rather than
// pick one.
func TestUseBackendWithFxallIsRefused(t *testing.T) {
	t.Parallel()
	var b discovery.Backend
	err := fx.New(fxmodule.Module, fxall.Module,
		fxmodule.UseBackend(func() (*memory.Backend, error) { return memory.New(nil) }),
		fx.Populate(&b), fx.NopLogger).Err()
	if err == nil || !strings.Contains(err.Error(), "already provided") {
		t.Errorf("fx.New with fxall.Module and UseBackend: %v; want fx's error that discovery.Backend is already provided", err)
	}
}
