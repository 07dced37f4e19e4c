// Package servingtest holds what roster's backend tests of serving
// changes share: the changes an instance goes through (Edits), written in
// place as one write each, and the benchmark that compares such an update
// with a raw write of the registry (CompareUpdate). It imports testing, so
// only _test.go files may import it.
package servingtest

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// Edits are the serving changes a test applies to an instance one after
// the other, each registered again as an update in place: condition and
// reason, back to serving, weight, zone, draining.
var Edits = []func(*discovery.Instance){
	func(in *discovery.Instance) { in.Condition, in.Reason = discovery.ConditionNotReady, "warming up" },
	func(in *discovery.Instance) { in.Condition, in.Reason = discovery.ConditionServing, "" },
	func(in *discovery.Instance) { in.Weight = 300 },
	func(in *discovery.Instance) { in.Zone = "eu-west-1a" },
	func(in *discovery.Instance) { in.Condition, in.Reason = discovery.ConditionDraining, "shutting down" },
}

// CompareUpdate is the loop of a backend's BenchmarkServingUpdate: each
// round flips in's condition (not ready, serving), encodes it (untimed),
// writes the value with put (a raw write of the registry, under another
// key) and then in with update (Register of the held instance, changed),
// timing each. It reports put-ns/op, update-ns/op and update/put, the
// ratio of their mean latencies.
func CompareUpdate(b *testing.B, in discovery.Instance,
	encode func(discovery.Instance) ([]byte, error),
	put func(context.Context, []byte) error,
	update func(context.Context, discovery.Instance) error,
) {
	b.Helper()
	ctx := context.Background()
	conds := []discovery.Condition{discovery.ConditionNotReady, discovery.ConditionServing}
	var putTime, updateTime time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		in.Condition = conds[i%2]
		value, err := encode(in)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := put(ctx, value); err != nil {
			b.Fatal(err)
		}
		putTime += time.Since(start)
		start = time.Now()
		if err := update(ctx, in); err != nil {
			b.Fatal(err)
		}
		updateTime += time.Since(start)
	}
	b.ReportMetric(float64(putTime.Nanoseconds())/float64(b.N), "put-ns/op")
	b.ReportMetric(float64(updateTime.Nanoseconds())/float64(b.N), "update-ns/op")
	b.ReportMetric(float64(updateTime)/float64(putTime), "update/put")
}
