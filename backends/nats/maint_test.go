package nats_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
)

// TestMaintenanceKeys: overrides (one without a duration, one for an
// hour, one of a service not registered yet) are keys of their own beside
// the instances', <service>./maint/<id> (<service>./maint for a whole
// service), with '.' escaped in names as in the instances' keys. That they
// survive a restart of nats-server is discoverytest's
// FaultMaintenanceSurvivesRestart.
func TestMaintenanceKeys(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	owner, operator := newBackend(t, cfg), newBackend(t, cfg)
	ctx := t.Context()
	p1 := discovery.Instance{Service: "pay.ments", ID: "p.1", Address: "127.0.0.1:8080"}
	p2 := discovery.Instance{Service: "pay.ments", ID: "p-2", Address: "127.0.0.1:8081"}
	for _, in := range []discovery.Instance{p1, p2} {
		if err := owner.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []struct {
		target discovery.Key
		reason string
		d      time.Duration
	}{
		{p1.Key(), "disk", 0},
		{p2.Key(), "reboot", time.Hour},
		{discovery.Key{Service: "orders"}, "migration", 0},
	} {
		if err := operator.SetMaintenance(ctx, m.target, m.reason, m.d); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := rawJS(t, srv.URL()).KeyValue(ctx, "roster")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	slices.Sort(got)
	if want := "orders./maint pay=ments./maint/p-2 pay=ments./maint/p=1 pay=ments.p-2 pay=ments.p=1"; strings.Join(got, " ") != want {
		t.Errorf("keys = %s\nwant %s", strings.Join(got, " "), want)
	}
	infos, skipped, err := owner.Instances(ctx, p1.Service)
	if err != nil || len(infos) != 2 || len(skipped) != 0 || infos[1].Condition != discovery.ConditionMaintenance {
		t.Errorf("Instances = %+v, skipped %v, %v; want both instances, p.1 in maintenance, nothing skipped", infos, skipped, err)
	}
	services, skippedKeys, err := owner.Services(ctx)
	if err != nil || len(services) != 1 || services[0].Instances != 2 || len(skippedKeys) != 0 {
		t.Errorf("Services = %+v, skipped %v, %v; want pay.ments with 2 instances, nothing skipped", services, skippedKeys, err)
	}
}
