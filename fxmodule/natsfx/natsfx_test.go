package natsfx_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/fxmodule/natsfx"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var payments = discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"}

func testRetry() retry.Policy {
	return retry.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A NATS-only application adds natsfx.Module and supplies a nats.Config;
// the module's Timeout and Retry fill what it leaves zero. The instance is
// resolvable once the application has started and gone once it stopped.
func TestNATSByConfig(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	var (
		reg      *fxmodule.Registration
		resolver discovery.Resolver
	)
	app := fxtest.New(t,
		fxmodule.Module,
		natsfx.Module,
		fx.Supply(
			fxmodule.Config{Timeout: 2 * time.Second, Retry: testRetry()},
			nats.Config{Endpoints: []string{srv.URL()}, TTL: 5 * time.Second, Bucket: "natsfx_config"},
		),
		fx.Provide(func() hclog.Logger { return testlog.New(t) }),
		fxmodule.Instance(payments),
		fx.Populate(&reg, &resolver),
	)
	app.RequireStart()
	if err := reg.Wait(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatalf("Registration.Wait: %v", err)
	}
	got, err := resolver.Resolve(ctxFor(t, 5*time.Second), payments.Service)
	if err != nil || len(got) != 1 || !got[0].Equal(payments) {
		t.Fatalf("Resolve = %v, %v; want [%v]", got, err, payments)
	}
	app.RequireStop()

	// Another client of the same bucket sees the instance gone.
	other, err := nats.New(nats.Config{Endpoints: []string{srv.URL()}, Bucket: "natsfx_config", Logger: testlog.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := other.Resolve(ctxFor(t, 5*time.Second), payments.Service); err != nil || len(got) != 0 {
		t.Errorf("Resolve after stop = %v, %v; want nothing", got, err)
	}
}

// New works without fx: with a nil Lifecycle the caller closes the backend.
// A bad nats.Config gives nats.ErrInvalidConfig naming the field.
func TestNewWithoutFx(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	mod := fxmodule.Config{Timeout: 2 * time.Second, Retry: testRetry()}
	res, err := natsfx.New(natsfx.Params{Module: mod, Config: nats.Config{Endpoints: []string{srv.URL()}, Bucket: "natsfx_nofx"}, Logger: testlog.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Registrar.Register(ctxFor(t, 5*time.Second), payments); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got, err := res.Resolver.Resolve(ctxFor(t, 5*time.Second), payments.Service); err != nil || len(got) != 1 {
		t.Errorf("Resolve = %v, %v; want the instance", got, err)
	}
	if err := res.Backend.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	_, err = natsfx.New(natsfx.Params{Module: mod, Config: nats.Config{Endpoints: []string{"http://a:2379"}}})
	if !errors.Is(err, nats.ErrInvalidConfig) || !strings.Contains(err.Error(), "http://a:2379") {
		t.Errorf("New with an http:// endpoint: %v; want nats.ErrInvalidConfig naming it", err)
	}
}
