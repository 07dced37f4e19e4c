package etcd_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestMaintenanceSurvivesEtcdRestart: overrides are stored apart from the
// instances (<Prefix>/<service>/~maint/<id>, the instance's own value
// untouched), and an etcd restart keeps them, with and without a
// duration: after it, a watcher, Resolve, and the instance's owner
// restarting all see the instances in maintenance still.
func TestMaintenanceSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cfg := testConfig(t, srv.Endpoints())
	owner, reader, operator := newBackend(t, cfg), newBackend(t, cfg), newBackend(t, cfg)
	p1, p2 := instance("payments", "p-1"), instance("payments", "p-2")
	register(t, owner, p1)
	register(t, owner, p2)
	ctx := t.Context()
	if err := operator.SetMaintenance(ctx, p1.Key(), "disk", 0); err != nil {
		t.Fatal(err)
	}
	if err := operator.SetMaintenance(ctx, p2.Key(), "reboot", time.Hour); err != nil {
		t.Fatal(err)
	}
	want := []discovery.Instance{inMaint(p1, "disk"), inMaint(p2, "reboot")}
	w, err := reader.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	maintNextUntil(t, w, want)

	// Stored apart: the instance's key holds the process's value only.
	cli := etcdtest.Client(t, srv)
	resp, err := cli.Get(ctx, "/roster/services/payments/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
		if strings.HasSuffix(string(kv.Key), "/p-1") && !strings.Contains(string(kv.Key), "~") {
			var in discovery.Instance
			if err := json.Unmarshal(kv.Value, &in); err != nil || !in.Equal(p1) {
				t.Errorf("the instance's own value = %s; want the process's, unchanged", kv.Value)
			}
		}
	}
	wantKeys := "/roster/services/payments/p-1 /roster/services/payments/p-2 /roster/services/payments/~maint/p-1 /roster/services/payments/~maint/p-2"
	if got := strings.Join(keys, " "); got != wantKeys {
		t.Errorf("keys = %s\nwant %s", got, wantKeys)
	}

	infos, skipped, err := reader.Instances(ctx, "payments")
	if err != nil || len(infos) != 2 || len(skipped) != 0 || infos[0].Condition != discovery.ConditionMaintenance || infos[1].Reason != "reboot" {
		t.Errorf("Instances = %+v, skipped %v, %v; want both in maintenance, nothing skipped", infos, skipped, err)
	}
	services, skippedKeys, err := reader.Services(ctx)
	if err != nil || len(services) != 1 || services[0].Instances != 2 || len(skippedKeys) != 0 {
		t.Errorf("Services = %+v, skipped %v, %v; want payments with 2 instances, nothing skipped", services, skippedKeys, err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// (A watcher sees the same set again only if it saw the outage: the
	// changes below show its view after the restart.)
	testwait.Until(t, waitFor, "Resolve after the restart shows both in maintenance", func() bool {
		set, err := reader.Resolve(ctx, "payments")
		return err == nil && discovery.EqualSets(set, want)
	})
	// The owner restarts: Close (its instances leave) and a new Backend
	// registers them again.
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	maintNextUntil(t, w, []discovery.Instance{})
	owner2 := newBackend(t, cfg)
	register(t, owner2, p1)
	register(t, owner2, p2)
	maintNextUntil(t, w, want)
	list, err := operator.ListMaintenance(ctx, "payments")
	if err != nil || len(list) != 2 || list[1].Until.Sub(list[1].Since) != time.Hour {
		t.Errorf("ListMaintenance = %+v, %v; want both, p-2's for an hour", list, err)
	}

	// Off: the instance serves again, and the override's lease is gone.
	lease := resp.Kvs[3].Lease
	if lease == 0 {
		t.Fatalf("p-2's override %s has no lease", resp.Kvs[3].Key)
	}
	if err := operator.ClearMaintenance(ctx, p2.Key()); err != nil {
		t.Fatal(err)
	}
	maintNextUntil(t, w, []discovery.Instance{inMaint(p1, "disk"), p2})
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil || ttl.TTL != -1 {
		t.Errorf("TimeToLive of the cleared override's lease = %v, %v; want -1 (revoked)", ttl, err)
	}
}

// inMaint returns in as readers show it under an override with reason.
func inMaint(in discovery.Instance, reason string) discovery.Instance {
	in = in.Clone()
	in.Condition, in.Reason = discovery.ConditionMaintenance, reason
	return in
}

// maintNextUntil calls w.Next until it returns want, skipping the outage
// errors of a restart.
func maintNextUntil(t *testing.T, w discovery.Watcher, want []discovery.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
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
