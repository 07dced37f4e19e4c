package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// runBenchJSON runs roster bench in-process with -o json and decodes the
// report.
func runBenchJSON(t *testing.T, args ...string) benchReport {
	t.Helper()
	code, stdout, stderr := runInProcess(t, append([]string{"bench", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("bench output is not a JSON report: %v\n%s", err, stdout)
	}
	return rep
}

// TestBenchEmbeddedCut runs a small fleet against the embedded cluster with
// a cut longer than the TTL, and checks that every process registered
// again and every watcher has the exact set.
func TestBenchEmbeddedCut(t *testing.T) {
	rep := runBenchJSON(t, "--processes", "5", "--instances", "1", "--watchers", "2",
		"--service-size", "5", "--cut", "3s", "--ttl", "2s", "--recovery-timeout", "20s")
	if rep.Mode != "embedded" || rep.Registrations != 5 || rep.FirstRegistration.Count != 5 || rep.Missing != 0 {
		t.Fatalf("report: %+v; want embedded, 5 registrations, 5 first-registration samples, none missing", rep)
	}
	if rep.ServerEventsPerReg == nil || rep.RequestsPerReg <= 0 {
		t.Fatalf("report: %+v; want server events and requests per registration", rep)
	}
	f := rep.Fault
	if f == nil || f.Kind != "cut" || f.ProcessesRegisteredBack != 5 || f.Reregistered.Count != 5 ||
		f.WatchersExact != 2 || f.WatcherExact.Count != 2 || f.DialsPerProcessPerSec <= 0 {
		t.Fatalf("fault report: %+v; want a cut after which 5 processes registered again, 2 watchers exact, dials counted", f)
	}
}

// TestBenchEndpointsRemovesPrefix runs against an etcd given by
// --endpoints and checks that the run's prefix is empty afterwards.
func TestBenchEndpointsRemovesPrefix(t *testing.T) {
	srv := etcdtest.Start(t)
	rep := runBenchJSON(t, "--endpoints", srv.Endpoints()[0], "--processes", "3",
		"--instances", "2", "--watchers", "1", "--service-size", "4")
	if rep.Mode != "endpoints" || rep.Registrations != 6 || rep.Missing != 0 || rep.ServerEventsPerReg != nil {
		t.Fatalf("report: %+v; want endpoints mode, 6 registrations, none missing, no server metrics", rep)
	}
	cli := etcdtest.Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, rep.Prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d keys left under %s; want none", resp.Count, rep.Prefix)
	}
}

// TestBenchInputErrors checks that invalid flag combinations exit 2 with a
// message naming the flag, before any etcd is started.
func TestBenchInputErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--processes", "0"}, "roster: invalid --processes 0: want at least 1\n"},
		{[]string{"--processes", "2", "--watchers", "3"}, "roster: invalid --watchers 3: want 0..2 (--processes)\n"},
		{[]string{"--processes", "2", "--watchers", "1", "--service-size", "3"}, "roster: invalid --service-size 3: want 0..2 (--processes x --instances)\n"},
		{[]string{"--cut", "1s", "--restart", "1s"}, "roster: --cut and --restart cannot be combined\n"},
		{[]string{"--endpoints", "127.0.0.1:1", "--restart", "1s"}, "roster: --restart needs the embedded cluster; use --cut with --endpoints\n"},
		{[]string{"-o", "yaml"}, "roster: invalid --output \"yaml\": want table or json\n"},
	}
	for _, c := range cases {
		code, stdout, stderr := runInProcess(t, append([]string{"bench"}, c.args...)...)
		if code != exitInput || stdout != "" || stderr != c.want {
			t.Errorf("bench %q: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", c.args, code, stdout, stderr, exitInput, c.want)
		}
	}
}
