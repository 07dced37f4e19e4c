package fxmodule_test

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/fx/fxtest"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
)

// TestWeightZoneAndHealthFromEnvThroughEtcd: ROSTER_WEIGHT, ROSTER_ZONE
// and ROSTER_HEALTH_* read by ConfigFromEnv reach the registry through fx
// and a real etcd: another backend sees the instance not ready with the
// configured weight and zone until /healthz answers 2xx, then serving
// with them; an instance that declares its own weight and zone keeps them.
func TestWeightZoneAndHealthFromEnvThroughEtcd(t *testing.T) {
	t.Parallel()
	ok, url := healthServer(t)

	srv := sharedEtcd(t)
	setup := etcdConfig(t, srv)
	mod, err := fxmodule.ConfigFromEnv(env(map[string]string{
		"ROSTER_WEIGHT": "250", "ROSTER_ZONE": "eu-west-1a",
		"ROSTER_HEALTH_HTTP": url, "ROSTER_HEALTH_PERIOD": "20ms",
	}))
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	mod.Timeout, mod.Retry = setup.Timeout, setup.Retry
	setup.Config = mod

	other, err := etcd.New(setup.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w, ctx := watch(t, other, "payments")

	own := discovery.Instance{Service: "payments", ID: "p-2", Address: "127.0.0.1:8081", Weight: 7, Zone: "eu-west-1b"}
	app := fxtest.New(t,
		fxmodule.Module,
		setup.Options(),
		fxmodule.Instance(payments, own),
	)
	app.RequireStart()
	defer app.RequireStop()

	// next reads w until the set holds both instances in condition c,
	// p-1 with a Reason that contains reason.
	next := func(c discovery.Condition, reason string) map[string]discovery.Instance {
		t.Helper()
		for {
			set, err := w.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for both instances %v: %v", c, err)
			}
			byID := make(map[string]discovery.Instance)
			for _, in := range set {
				if in.Condition == c {
					byID[in.ID] = in
				}
			}
			if len(byID) == 2 && strings.Contains(byID["p-1"].Reason, reason) {
				return byID
			}
		}
	}
	check := func(got map[string]discovery.Instance) {
		t.Helper()
		if in := got["p-1"]; in.Weight != 250 || in.Zone != "eu-west-1a" {
			t.Errorf("p-1 has weight %d, zone %q; want ROSTER_WEIGHT's 250 and ROSTER_ZONE's eu-west-1a", in.Weight, in.Zone)
		}
		if in := got["p-2"]; in.Weight != 7 || in.Zone != "eu-west-1b" {
			t.Errorf("p-2 has weight %d, zone %q; want its own 7 and eu-west-1b", in.Weight, in.Zone)
		}
	}
	check(next(discovery.ConditionNotReady, "503")) // with the check's output
	ok.Store(true)
	check(next(discovery.ConditionServing, ""))
}

// TestWeightAndZoneErrors: a bad ROSTER_WEIGHT or ROSTER_ZONE, or a bad
// Config.Weight or Config.Zone, is an error wrapping ErrInvalidConfig that
// names the variable or the field.
func TestWeightAndZoneErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value, want string }{
		{"ROSTER_WEIGHT", "heavy", `ROSTER_WEIGHT is "heavy"; want a whole number from 1 to 10000`},
		{"ROSTER_WEIGHT", "0", `ROSTER_WEIGHT is "0"`},
		{"ROSTER_WEIGHT", "10001", `ROSTER_WEIGHT is "10001"`},
		{"ROSTER_ZONE", "eu west", `ROSTER_ZONE is "eu west": `},
	} {
		got, err := fxmodule.ConfigFromEnv(env(map[string]string{tc.name: tc.value}))
		if !errors.Is(err, fxmodule.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: ConfigFromEnv = %+v, %v; want ErrInvalidConfig containing %q", tc.name, tc.value, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg  fxmodule.Config
		want string
	}{
		{fxmodule.Config{Weight: -1}, "Weight is -1; want 1 to 10000"},
		{fxmodule.Config{Weight: 20000}, "Weight is 20000"},
		{fxmodule.Config{Zone: strings.Repeat("z", 200)}, "Zone is "},
		{fxmodule.Config{Zone: "a/b"}, `Zone is "a/b"`},
	} {
		if _, err := fxmodule.LoadConfig(tc.cfg); !errors.Is(err, fxmodule.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadConfig(%+v) = %v; want ErrInvalidConfig containing %q", tc.cfg, err, tc.want)
		}
	}
	got, err := fxmodule.ConfigFromEnv(env(map[string]string{"ROSTER_WEIGHT": " 300 ", "ROSTER_ZONE": "us-east-1c"}))
	if err != nil || got.Weight != 300 || got.Zone != "us-east-1c" {
		t.Errorf("ConfigFromEnv = %+v, %v; want Weight 300, Zone us-east-1c", got, err)
	}
}
