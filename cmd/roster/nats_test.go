package main

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats/natstest"
)

// TestNATSFromDevToDeregister runs every command against NATS: "roster dev
// --backend nats" serves an embedded NATS with JetStream and prints what
// to export; watch sees register's instance come; ls shows it with the
// time left on its key; deregister removes it and the live register
// restores it; Ctrl+C on register removes it at once.
func TestNATSFromDevToDeregister(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t))
	dev := startRoster(t, nil, "dev", "--backend", "nats", "--port", port)
	dev.waitLine("NATS is serving on nats://127.0.0.1:" + port)
	dev.waitLine("data in ")
	env := []string{strings.TrimPrefix(dev.waitLine("export ROSTER_BACKEND="), "export ")}
	env = append(env, strings.TrimPrefix(dev.waitLine("export ROSTER_ENDPOINTS="), "export "))
	if want := []string{"ROSTER_BACKEND=nats", "ROSTER_ENDPOINTS=nats://127.0.0.1:" + port}; env[0] != want[0] || env[1] != want[1] {
		t.Fatalf("dev printed %q; want %q", env, want)
	}

	r := runRoster(t, env, "ls")
	if r.code != 0 || r.stdout != "no services in bucket roster\n" || r.stderr != "" {
		t.Fatalf("ls: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")

	reg := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080",
		"--meta", "zone=a", "--ttl", "60s")
	if line := reg.waitLine("registered payments/p-1"); line != "registered payments/p-1 at 127.0.0.1:8080" {
		t.Errorf("register printed %q", line)
	}
	watch.waitLine("payments: 1 instance")
	watch.waitLine("+ p-1 127.0.0.1:8080 zone=a")

	r = runRoster(t, env, "ls", "payments")
	m := regexp.MustCompile(`^ID\s+ADDRESS\s+METADATA\s+TTL\np-1\s+127\.0\.0\.1:8080\s+zone=a\s+(\d+)\n$`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("ls payments: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if ttl, _ := strconv.Atoi(m[1]); ttl < 30 || ttl > 60 {
		t.Errorf("TTL %d; want about 60", ttl)
	}
	r = runRoster(t, env, "ls")
	if !regexp.MustCompile(`^SERVICE\s+INSTANCES\npayments\s+1\n$`).MatchString(r.stdout) {
		t.Errorf("ls:\n%s", r.stdout)
	}

	r = runRoster(t, env, "deregister", "--service", "payments", "--id", "p-9")
	if r.code != exitFailure || r.stderr != "roster: payments/p-9 not found (no key payments.p-9 in bucket roster)\n" {
		t.Errorf("deregister p-9: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runRoster(t, env, "deregister", "--service", "payments", "--id", "p-1")
	if r.code != 0 || r.stdout != "deleted payments/p-1\n" {
		t.Fatalf("deregister p-1: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	// The process that registered it is alive: it puts it back.
	reg.waitLine("lost payments/p-1")
	reg.waitLine("registered again payments/p-1 at 127.0.0.1:8080")

	sent := time.Now()
	reg.interrupt()
	reg.waitLine("deregistered payments/p-1")
	watch.waitLine("- p-1 127.0.0.1:8080")
	if took := time.Since(sent); took > 10*time.Second {
		t.Errorf("the instance left the watch %v after Ctrl+C; want at once, not at its 60s TTL", took)
	}
	watch.interrupt()
	dev.interrupt()
	dev.waitLine("NATS stopped")
}

// TestEndpointCredentialsNotShown: a NATS URL may carry a user and
// password, or a token (nats://user:password@host, nats://token@host). The
// web view's page, which anyone who reaches it can read, and the error of
// an unreachable registry show the endpoint without them.
func TestEndpointCredentialsNotShown(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithUser("ops", "hunter2"))
	ep := "nats://ops:hunter2@" + srv.Addr()
	ui := startRoster(t, []string{"ROSTER_BACKEND=nats", "ROSTER_ENDPOINTS=" + ep}, "ui", "--listen", "127.0.0.1:0")
	data := firstEventHolding(t, uiURLOf(t, ui), `"registry":`)
	if want := `"registry":"NATS nats://redacted@` + srv.Addr() + ` bucket roster"`; strings.Contains(data, "hunter2") || !strings.Contains(data, want) {
		t.Errorf("the page names the registry as in\n%s\nwant %s, without the password", data, want)
	}
	ui.interrupt()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, ep := range []string{"nats://ops:hunter2@" + closed, "nats://hunter2@" + closed} {
		code, _, stderr := runInProcess(t, "ls", "--backend", "nats", "--endpoints", ep, "--timeout", "1s")
		// The credentials travel without TLS: a warning first, then the error.
		warning := "roster: warning: the password or token is sent to NATS in clear: nats://redacted@" + closed +
			" does not use TLS (give tls:// endpoints, or --cacert)\n"
		rest, warned := strings.CutPrefix(stderr, warning)
		if want := "roster: NATS at nats://redacted@" + closed + ": "; code != exitFailure || strings.Contains(stderr, "hunter2") || !warned || !strings.HasPrefix(rest, want) {
			t.Errorf("ls --endpoints %s: exit %d, stderr %q; want %d, the warning %q and %q..., without the password", ep, code, stderr, exitFailure, warning, want)
		}
	}
}

// TestCredentialsInClearWarned: a password sent to NATS without TLS is
// said once on stderr, as for etcd (#22 item 6); with no password, nothing.
func TestCredentialsInClearWarned(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t, natstest.WithUser("ops", "hunter2"))
	r := runRoster(t, []string{"ROSTER_PASSWORD=hunter2"}, "ls", "--backend", "nats", "--endpoints", "nats://"+srv.Addr(), "--user", "ops")
	warning := "roster: warning: the password or token is sent to NATS in clear: nats://" + srv.Addr() +
		" does not use TLS (give tls:// endpoints, or --cacert)\n"
	if r.code != exitOK || r.stderr != warning {
		t.Errorf("ls with a password over nats://: exit %d, stdout %q, stderr %q; want 0 and the warning %q", r.code, r.stdout, r.stderr, warning)
	}
	open := natstest.Start(t)
	if r := runRoster(t, nil, "ls", "--backend", "nats", "--endpoints", "nats://"+open.Addr()); r.code != exitOK || r.stderr != "" {
		t.Errorf("ls without credentials: exit %d, stderr %q; want 0 and nothing on stderr", r.code, r.stderr)
	}
}
