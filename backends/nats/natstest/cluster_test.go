package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

func TestClusterSurvivesItsLeader(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no meta leader after StartCluster")
	}
	js := connect(t, c.URLs()[0]) // the client learns the other nodes from the server
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	testwait.Until(t, 10*time.Second, "a replicated bucket is created", func() bool {
		var err error
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3})
		if err != nil {
			t.Logf("CreateKeyValue: %v", err)
		}
		return err == nil
	})
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	c.Nodes()[leader].Stop()
	testwait.Until(t, 10*time.Second, "another meta leader", func() bool {
		l := c.Leader()
		return l >= 0 && l != leader
	})
	natstest.Restart(t, c.Nodes()[leader])
	testwait.Until(t, 10*time.Second, "Get(k) = v on the cluster", func() bool {
		return getsV(ctx, kv)
	})
}
