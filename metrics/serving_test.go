package metrics_test

import (
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/metrics"
)

// roster_instances counts the process's instances by the condition they
// publish, and follows an update in place.
func TestInstancesByCondition(t *testing.T) {
	t.Parallel()
	b := newMemory(t, memory.NewStore())
	col := metrics.New(b)
	defer col.Close()
	url := endpoint(t, col)
	cond := func(c string, n float64) want {
		return want{"roster_instances", []string{"service", "payments", "condition", c}, n}
	}
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:80"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:80", Condition: discovery.ConditionNotReady}
	p3 := discovery.Instance{Service: "payments", ID: "p-3", Address: "10.0.0.3:80", Condition: discovery.ConditionDraining}
	register(t, b, p1, p2, p3)
	waitMetrics(t, url, "one instance per condition", cond("serving", 1), cond("not_ready", 1), cond("draining", 1))
	p2.Condition = discovery.ConditionServing
	register(t, b, p2)
	waitMetrics(t, url, "p-2 serving", cond("serving", 2), cond("not_ready", 0), cond("draining", 1))
}
