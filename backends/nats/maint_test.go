package nats_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestMaintenanceSurvivesNATSRestart: an override (one without a
// duration, one for an hour, one of a service not registered yet) is kept
// through a restart of nats-server: after it a watcher, Resolve and the
// owner registering again all see the instances in maintenance, and the
// operator's listing holds the three. Instances counts only instances.
func TestMaintenanceSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	cfg := testConfig(t, srv.URL(), "roster")
	owner, reader, operator := newBackend(t, cfg), newBackend(t, cfg), newBackend(t, cfg)
	ctx := t.Context()
	p1 := discovery.Instance{Service: "pay.ments", ID: "p.1", Address: "127.0.0.1:8080"}
	p2 := discovery.Instance{Service: "pay.ments", ID: "p-2", Address: "127.0.0.1:8081"}
	for _, in := range []discovery.Instance{p1, p2} {
		if err := owner.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := operator.SetMaintenance(ctx, p1.Key(), "disk", 0); err != nil {
		t.Fatal(err)
	}
	if err := operator.SetMaintenance(ctx, p2.Key(), "reboot", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := operator.SetMaintenance(ctx, discovery.Key{Service: "orders"}, "migration", 0); err != nil {
		t.Fatal(err)
	}
	want := []discovery.Instance{natsMaint(p2, "reboot"), natsMaint(p1, "disk")}
	w, err := reader.Watch(ctx, p1.Service)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	natsNextUntil(t, w, want)
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
	infos, skipped, err := reader.Instances(ctx, p1.Service)
	if err != nil || len(infos) != 2 || len(skipped) != 0 || infos[1].Condition != discovery.ConditionMaintenance {
		t.Errorf("Instances = %+v, skipped %v, %v; want both instances, p.1 in maintenance, nothing skipped", infos, skipped, err)
	}
	services, skippedKeys, err := reader.Services(ctx)
	if err != nil || len(services) != 1 || services[0].Instances != 2 || len(skippedKeys) != 0 {
		t.Errorf("Services = %+v, skipped %v, %v; want pay.ments with 2 instances, nothing skipped", services, skippedKeys, err)
	}

	natstest.Restart(t, srv)
	// (A watcher sees the same set again only if it saw the outage: the
	// changes below show its view after the restart.)
	testwait.Until(t, 10*time.Second, "Resolve after the restart shows both in maintenance", func() bool {
		set, err := reader.Resolve(ctx, p1.Service)
		return err == nil && discovery.EqualSets(set, want)
	})
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	natsNextUntil(t, w, []discovery.Instance{})
	owner2 := newBackend(t, cfg)
	for _, in := range []discovery.Instance{p1, p2} {
		if err := owner2.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	natsNextUntil(t, w, want)
	list, err := operator.ListMaintenance(ctx, p1.Service)
	if err != nil || len(list) != 2 || list[0].ID != "p-2" || list[0].Until.Sub(list[0].Since) != time.Hour {
		t.Errorf("ListMaintenance = %+v, %v; want p-2's for an hour, and p.1's", list, err)
	}
	if list, err := operator.ListMaintenance(ctx, "orders"); err != nil || len(list) != 1 || list[0].Target() != (discovery.Key{Service: "orders"}) {
		t.Errorf("ListMaintenance(orders) = %+v, %v; want the whole service's", list, err)
	}

	if err := operator.ClearMaintenance(ctx, p1.Key()); err != nil {
		t.Fatal(err)
	}
	natsNextUntil(t, w, []discovery.Instance{natsMaint(p2, "reboot"), p1})
}

// natsMaint returns in as readers show it under an override with reason.
func natsMaint(in discovery.Instance, reason string) discovery.Instance {
	in = in.Clone()
	in.Condition, in.Reason = discovery.ConditionMaintenance, reason
	return in
}

// natsNextUntil calls w.Next until it returns want, skipping the outage
// errors of a restart.
func natsNextUntil(t *testing.T, w discovery.Watcher, want []discovery.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		set, err := w.Next(ctx)
		if err == nil && discovery.EqualSets(set, want) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("waiting for %v: last %v, %v", want, set, err)
		}
	}
}
