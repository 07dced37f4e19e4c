package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/backends/nats/natstest"
)

// TestMaintOnOff runs the real binary against a real etcd: maint on puts a
// registered instance in maintenance with the operator's reason, which
// watch and ls show; the registering process restarting does not clear
// it; maint off restores serving; a whole-service override with --for
// ends by itself; maint ls lists overrides; off without an override says
// so and succeeds.
func TestMaintOnOff(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)
	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")
	regArgs := []string{"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080", "--ttl", "60s"}
	reg := startRoster(t, env, regArgs...)
	reg.waitLine("registered payments/p-1")
	watch.waitLine("+ p-1 127.0.0.1:8080")

	r := runRoster(t, env, "maint", "on", "payments/p-1", "--reason", "disk replacement")
	if r.code != 0 || r.stdout != "maintenance on payments/p-1: \"disk replacement\"\n" {
		t.Fatalf("maint on: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	watch.waitLine(`~ p-1 127.0.0.1:8080 [maintenance "disk replacement"]`)
	r = runRoster(t, env, "ls", "payments")
	if !regexp.MustCompile(`(?m)^p-1\s+127\.0\.0\.1:8080\s+maintenance "disk replacement"\s+100\s+-\s+-\s+\d+$`).MatchString(r.stdout) || r.stderr != "" {
		t.Errorf("ls payments under the override: exit %d\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = runRoster(t, env, "ls")
	if !regexp.MustCompile(`(?m)^payments\s+1$`).MatchString(r.stdout) || r.stderr != "" {
		t.Errorf("ls: the override counted or warned about:\n%s\nstderr: %s", r.stdout, r.stderr)
	}

	// The process restarts: its instance leaves and comes back, still in
	// maintenance.
	reg.interrupt()
	watch.waitLine("- p-1 127.0.0.1:8080")
	reg = startRoster(t, env, regArgs...)
	reg.waitLine("registered payments/p-1")
	watch.waitLine(`+ p-1 127.0.0.1:8080 [maintenance "disk replacement"]`)

	r = runRoster(t, env, "maint", "ls", "payments")
	if !regexp.MustCompile(`(?m)^TARGET\s+REASON\s+SINCE\s+UNTIL\npayments/p-1\s+"disk replacement"\s+\S+Z\s+-$`).MatchString(r.stdout) {
		t.Errorf("maint ls payments: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runRoster(t, env, "maint", "off", "payments/p-1")
	if r.code != 0 || r.stdout != "maintenance off payments/p-1\n" {
		t.Fatalf("maint off: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if line := watch.waitLine("~ p-1"); line != "~ p-1 127.0.0.1:8080" {
		t.Errorf("watch after maint off printed %q; want p-1 serving", line)
	}

	r = runRoster(t, env, "maint", "on", "payments", "--reason", "region evacuation", "--for", "2s")
	if r.code != 0 || !regexp.MustCompile(`^maintenance on payments \(whole service\): "region evacuation" for 2s \(until \S+Z\)\n$`).MatchString(r.stdout) {
		t.Fatalf("maint on payments --for 2s: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	watch.waitLine(`~ p-1 127.0.0.1:8080 [maintenance "region evacuation"]`)
	if line := watch.waitLine("~ p-1"); line != "~ p-1 127.0.0.1:8080" {
		t.Errorf("watch after the override's end printed %q; want p-1 serving", line)
	}
	r = runRoster(t, env, "maint", "off", "payments/p-1")
	if r.code != 0 || r.stdout != "no maintenance override on payments/p-1\n" {
		t.Errorf("maint off without an override: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	reg.interrupt()
	watch.interrupt()
}

// TestMaintRejectsBadInput: a missing or invalid --reason, a --for not
// above 0 and an invalid target are input errors naming the flag or the
// argument, and nothing is written. Three cases run the real binary
// against a real etcd; the others run in-process (they fail before any
// connection).
func TestMaintRejectsBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"on", "payments/p-1"}, "--reason is required"},
		{[]string{"on", "payments/p-1", "--reason", "disk", "--for", "-1s"}, "invalid --for -1s"},
		{[]string{"on", "payments/p/1", "--reason", "disk"}, "invalid ID in the target argument"},
		{[]string{"on", "payments/p-1", "--reason", ""}, "invalid --reason"},
		{[]string{"on", "payments/p-1", "--reason", "a\nb"}, "invalid --reason"},
		{[]string{"on", "payments/p-1", "--reason", strings.Repeat("r", 257)}, "invalid --reason"},
		{[]string{"on", "payments/p-1", "--reason", "disk", "--for", "0s"}, "invalid --for 0s"},
		{[]string{"on", "payments/p-1", "--reason", "disk", "--for", "soon"}, "--for"},
		{[]string{"on", "pay ments/p-1", "--reason", "disk"}, "invalid service in the target argument"},
		{[]string{"on", "payments/", "--reason", "disk"}, "ID in the target argument is required"},
		{[]string{"on", "--reason", "disk"}, "missing target argument"},
		{[]string{"off", "payments/~maint"}, "invalid ID in the target argument"},
		{[]string{"ls", "pay/ments"}, "invalid service argument"},
	}
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)
	for i, tc := range cases {
		args := append([]string{"maint"}, tc.args...)
		var code int
		var stderr string
		if i < 3 {
			r := runRoster(t, env, args...)
			code, stderr = r.code, r.stderr
		} else {
			code, _, stderr = runInProcess(t, append(args, "--endpoints", strings.Join(srv.Endpoints(), ","))...)
		}
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("maint %q: exit %d, stderr %q; want an error with %q", tc.args, code, stderr, tc.want)
		}
	}
	r := runRoster(t, env, "maint", "ls", "payments")
	if r.code != 0 || r.stdout != "no maintenance overrides on payments\n" {
		t.Errorf("maint ls after the rejected commands: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestMaintOnNATS: the same commands against a real nats-server: watch
// and ls show the override, maint ls lists it, off restores serving.
func TestMaintOnNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	env := []string{"ROSTER_BACKEND=nats", "ROSTER_ENDPOINTS=" + srv.URL()}
	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")
	reg := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080", "--ttl", "60s")
	reg.waitLine("registered payments/p-1")
	watch.waitLine("+ p-1 127.0.0.1:8080")

	r := runRoster(t, env, "maint", "on", "payments/p-1", "--reason", "disk")
	if r.code != 0 || r.stdout != "maintenance on payments/p-1: \"disk\"\n" {
		t.Fatalf("maint on: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	watch.waitLine(`~ p-1 127.0.0.1:8080 [maintenance "disk"]`)
	r = runRoster(t, env, "ls", "payments")
	if !regexp.MustCompile(`(?m)^p-1\s+127\.0\.0\.1:8080\s+maintenance "disk"\s`).MatchString(r.stdout) || r.stderr != "" {
		t.Errorf("ls payments under the override: exit %d\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = runRoster(t, env, "maint", "ls", "payments")
	if !regexp.MustCompile(`(?m)^payments/p-1\s+"disk"\s+\S+Z\s+-$`).MatchString(r.stdout) {
		t.Errorf("maint ls payments: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runRoster(t, env, "maint", "off", "payments/p-1")
	if r.code != 0 || r.stdout != "maintenance off payments/p-1\n" {
		t.Fatalf("maint off: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if line := watch.waitLine("~ p-1"); line != "~ p-1 127.0.0.1:8080" {
		t.Errorf("watch after maint off printed %q; want p-1 serving", line)
	}
	reg.interrupt()
	watch.interrupt()
}
