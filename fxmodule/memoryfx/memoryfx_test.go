package memoryfx_test

import (
	"context"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/memoryfx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Two applications given one *memory.Store see each other's instances:
// each registers its own, and the other resolves it.
func TestSharedStoreFromGraph(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	app := func(in discovery.Instance, res *discovery.Resolver, reg **fxmodule.Registration) *fxtest.App {
		return fxtest.New(t, fxmodule.Module, memoryfx.Module, fx.Supply(store),
			fxmodule.Instance(in), fx.Populate(res, reg))
	}
	a := discovery.Instance{Service: "web", ID: "a", Address: "127.0.0.1:1"}
	b := discovery.Instance{Service: "web", ID: "b", Address: "127.0.0.1:2"}
	var resA, resB discovery.Resolver
	var regA, regB *fxmodule.Registration
	appA, appB := app(a, &resA, &regA), app(b, &resB, &regB)
	appA.RequireStart()
	appB.RequireStart()
	ctx := context.Background()
	for _, r := range []*fxmodule.Registration{regA, regB} {
		if err := r.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]discovery.Resolver{"a": resA, "b": resB} {
		if got, err := r.Resolve(ctx, "web"); err != nil || !discovery.EqualSets(got, []discovery.Instance{a, b}) {
			t.Errorf("application %s resolves %v, %v; want both instances", name, got, err)
		}
	}
	appB.RequireStop()
	if got, err := resA.Resolve(ctx, "web"); err != nil || !discovery.EqualSets(got, []discovery.Instance{a}) {
		t.Errorf("after b stopped, a resolves %v, %v; want a only", got, err)
	}
	appA.RequireStop()
}
