package fxmodule_test

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	natsgo "github.com/nats-io/nats.go"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/fxall"
)

// ROSTER_BACKEND=nats and ROSTER_ENDPOINTS=nats://... are all an
// application needs to register on NATS: the instance is in the bucket
// once the application has started, and leaves it at once when it stops.
func TestNATSSelectedByEnvironment(t *testing.T) {
	srv := natstest.Start(t)
	t.Setenv(fxmodule.EnvBackend, "nats")
	t.Setenv("ROSTER_ENDPOINTS", srv.URL())
	t.Setenv("ROSTER_BUCKET", "fxmodule_test")
	t.Setenv("ROSTER_TTL", "5s")

	var (
		reg     *fxmodule.Registration
		backend discovery.Backend
	)
	app := fxtest.New(t,
		fxmodule.Module,
		fxall.Module,
		fx.Provide(func() hclog.Logger { return testLogger(t) }),
		fxmodule.Instance(payments),
		fx.Populate(&reg, &backend),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	if _, ok := backend.(*nats.Backend); !ok {
		t.Fatalf("backend is %T; want *nats.Backend", backend)
	}

	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctxFor(t, 5*time.Second), "fxmodule_test")
	if err != nil {
		t.Fatalf("the bucket named by ROSTER_BUCKET: %v", err)
	}
	if _, err := kv.Get(ctxFor(t, 5*time.Second), "payments.p-1"); err != nil {
		t.Fatalf("Get(payments.p-1) after start: %v; want the instance", err)
	}

	app.RequireStop()
	if e, err := kv.Get(ctxFor(t, 5*time.Second), "payments.p-1"); err == nil {
		t.Fatalf("Get(payments.p-1) after stop = %s; want it gone", e.Value())
	}
}
