//go:build !race

package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBenchFleetRestartUnderContention is issue #21's regression test at
// a size CI affords: 200 simulated processes, the whole embedded cluster
// stopped for 5 s (longer than the 3 s TTL), two goroutines spinning for
// the whole run. It fails if any process is not registered again, if any
// status said registered while the registry had been unreachable for
// longer than the TTL (the bench's own check, from each process's
// timeline), if a process spent more than 4 requests on average to
// recover, if the fleet dialled more than 1.5 times per process per
// second during the fault, or if p99 of the time from the registry being
// usable to a process being registered again exceeds 10 s (5x the
// issue's 2 s: a bound that catches a process waiting out a backoff
// grown during the outage, not the machine's speed).
//
// It builds without the race detector only: under -race the same fleet
// takes two minutes on a busy 2-core machine, and the race detector has
// the smaller bench tests (bench_test.go) to watch the same code.
//
// .ci/run runs it (go test -count=1 -run TestBenchFleet ./cmd/roster/),
// as does any go test without -race. On this 2-core machine it takes
// about a minute. At load 17-25 (eight sessions sharing the machine)
// etcd itself expired 100-245 of the 200 leases after the restart (its
// counter etcd_debugging_server_lease_expired_total, logged below): the
// 3 s TTL is shorter than what a starved 3-member cluster takes to answer
// 200 grants, reads and keep-alives. Beside two busy loops and its own
// two, it passes (docs/fleet-sizing.md, issue #21).
func TestBenchFleetRestartUnderContention(t *testing.T) {
	timeline := filepath.Join(t.TempDir(), "timeline.json")
	code, stdout, stderr := runInProcess(t, "bench", "-o", "json", "--processes", "200", "--concurrency", "32", "--watchers", "10",
		"--service-size", "50", "--ttl", "3s", "--restart", "5s", "--cpu-burn", "2", "--recovery-timeout", "40s", "--timeline", timeline)
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Fault == nil {
		t.Fatalf("bench exit %d, no fault report (%v)\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	f := rep.Fault
	t.Logf("usable %.0f ms after the heal; registered again %d/200, from usable p50 %.0f p99 %.0f max %.0f ms; "+
		"requests/process until back %.2f (max %d) %v; dials/process/s %.2f; etcd %v",
		f.UsableAfterHeal, f.ProcessesRegisteredBack, f.Reregistered.P50, f.Reregistered.P99, f.Reregistered.Max,
		f.RecoveryRequests, f.MaxRecoveryRequests, f.RecoveryRequestsByMethod, f.DialsPerProcessPerSec, f.ServerCounters)
	if f.Stragglers != 0 || f.ProcessesRegisteredBack != 200 || f.Reregistered.Count != 200 {
		t.Errorf("%d/200 processes registered again (%d stragglers); want all", f.ProcessesRegisteredBack, f.Stragglers)
	}
	if len(f.Lies) != 0 {
		t.Errorf("%d statuses said registered while etcd had been unreachable for longer than the TTL: %+v", len(f.Lies), f.Lies[:min(3, len(f.Lies))])
	}
	if f.RecoveryRequests > 4 {
		t.Errorf("%.2f requests per process to recover (%v); want at most 4", f.RecoveryRequests, f.RecoveryRequestsByMethod)
	}
	if f.Reregistered.P99 > 10_000 {
		t.Errorf("p99 %.0f ms from usable to registered again; want at most 10 s", f.Reregistered.P99)
	}
	if f.DialsPerProcessPerSec > 1.5 {
		t.Errorf("%.2f connection attempts per process per second during the fault; want at most 1.5", f.DialsPerProcessPerSec)
	}
	if f.WatchersExact != 10 {
		t.Errorf("%d/10 watchers exact; want all", f.WatchersExact)
	}
	if rep.Missing != 0 || rep.MissingUnknown != "" {
		t.Errorf("%d of 200 registrations missing from etcd at the end (%v), although every process said registered; %s",
			rep.Missing, rep.MissingKeys, rep.MissingUnknown)
		logTimelines(t, timeline, rep.MissingKeys)
	}
	if code != 0 {
		t.Errorf("bench exit %d; want 0\nstderr:\n%s", code, stderr)
	}
	if got := slices.Sorted(maps.Keys(f.RecoveryRequestsByMethod)); len(got) == 0 {
		t.Errorf("no recovery request counted by method")
	}
}

// logTimelines logs the status timelines of the processes holding keys
// (service/id), from the bench's --timeline file.
func logTimelines(t *testing.T, file string, keys []string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Logf("no timeline: %v", err)
		return
	}
	type event struct {
		At       string `json:"at"`
		Instance string `json:"instance"`
		State    string `json:"state"`
		Error    string `json:"error"`
	}
	var tl struct {
		Fault     json.RawMessage `json:"fault"`
		Processes []struct {
			Index  int     `json:"index"`
			Events []event `json:"events"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(data, &tl); err != nil {
		t.Logf("timeline unreadable: %v", err)
		return
	}
	t.Logf("fault: %s", tl.Fault)
	ids := make(map[string]string, len(keys))
	for _, key := range keys {
		_, id, _ := strings.Cut(key, "/")
		ids[id] = key
	}
	for _, p := range tl.Processes {
		for _, e := range p.Events {
			if key, ok := ids[e.Instance]; ok {
				t.Logf("process %d (%s): %s %s %s", p.Index, key, e.At, e.State, e.Error)
			}
		}
	}
}
