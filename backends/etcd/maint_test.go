package etcd_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
)

// TestMaintenanceStoredApart: overrides are stored apart from the
// instances (<Prefix>/<service>/~maint/<id>, the instance's own value
// untouched), one with a duration under a lease of its own, which
// clearing it revokes. That they survive an etcd restart is
// discoverytest's FaultMaintenanceSurvivesRestart.
func TestMaintenanceStoredApart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cfg := testConfig(t, srv.Endpoints())
	owner, operator := newBackend(t, cfg), newBackend(t, cfg)
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
		t.Fatalf("keys = %s\nwant %s", got, wantKeys)
	}

	// Off: the override's lease is gone.
	lease := resp.Kvs[3].Lease
	if lease == 0 {
		t.Fatalf("p-2's override %s has no lease", resp.Kvs[3].Key)
	}
	if err := operator.ClearMaintenance(ctx, p2.Key()); err != nil {
		t.Fatal(err)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil || ttl.TTL != -1 {
		t.Errorf("TimeToLive of the cleared override's lease = %v, %v; want -1 (revoked)", ttl, err)
	}
}
