package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// The tests in this file drive the roster binary built by TestMain as
// separate processes, against etcd servers started in the test process.

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestDevThenLs starts "roster dev", lists its (empty) registry with
// "roster ls", registers an instance, and stops dev with SIGINT.
func TestDevThenLs(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t))
	dataDir := filepath.Join(t.TempDir(), "etcd")
	dev := startRoster(t, nil, "dev", "--port", port, "--data-dir", dataDir)
	dev.waitLine("etcd is serving on 127.0.0.1:" + port)
	dev.waitLine("data in " + dataDir + " (kept)")
	line := dev.waitLine("export ROSTER_ENDPOINTS=")
	env := []string{strings.TrimPrefix(line, "export ")}
	if env[0] != "ROSTER_ENDPOINTS=127.0.0.1:"+port {
		t.Fatalf("dev printed %q; want export ROSTER_ENDPOINTS=127.0.0.1:%s", line, port)
	}

	r := runRoster(t, env, "ls")
	if r.code != 0 || r.stdout != "no services under /roster/services\n" || r.stderr != "" {
		t.Fatalf("ls: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	reg := startRoster(t, env, "register", "--service", "payments", "--address", "127.0.0.1:8080")
	reg.waitLine("registered payments/127.0.0.1-8080 at 127.0.0.1:8080")
	r = runRoster(t, env, "ls", "-o", "json")
	if want := "[\n  {\n    \"service\": \"payments\",\n    \"instances\": 1\n  }\n]\n"; r.code != 0 || r.stdout != want {
		t.Fatalf("ls -o json: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	reg.interrupt()

	dev.interrupt()
	dev.waitLine("stopping etcd")
	dev.waitLine("etcd stopped")
	if entries, err := os.ReadDir(dataDir); err != nil || len(entries) == 0 {
		t.Errorf("data directory %s after dev: %v, %d entries; want it kept", dataDir, err, len(entries))
	}
}

// TestRegisterWatchLs: a watch sees a registration come and, once register
// gets SIGINT, go at once (the lease is revoked, not left to expire); ls
// shows the instance with the time left on its lease.
func TestRegisterWatchLs(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)

	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")

	// A TTL far longer than the test: the instance can only leave this
	// quickly because its lease is revoked.
	reg := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080",
		"--meta", "zone=a", "--meta", "version=1.4.2", "--ttl", "60s")
	line := reg.waitLine("registered payments/p-1")
	if !regexp.MustCompile(`^registered payments/p-1 at 127\.0\.0\.1:8080 \(lease [0-9a-f]+\)$`).MatchString(line) {
		t.Errorf("register printed %q", line)
	}
	watch.waitLine("payments: 1 instance")
	watch.waitLine("+ p-1 127.0.0.1:8080 version=1.4.2,zone=a")

	r := runRoster(t, env, "ls", "payments")
	want := regexp.MustCompile(`^ID\s+ADDRESS\s+METADATA\s+TTL\np-1\s+127\.0\.0\.1:8080\s+version=1\.4\.2,zone=a\s+(\d+)\n$`)
	m := want.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("ls payments: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if ttl, _ := strconv.Atoi(m[1]); ttl < 30 || ttl > 60 {
		t.Errorf("TTL %d; want about 60", ttl)
	}

	r = runRoster(t, env, "ls", "payments", "-o", "json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("ls payments -o json: %v\n%s", err, r.stdout)
	}
	if rows[0]["service"] != "payments" || rows[0]["id"] != "p-1" || rows[0]["address"] != "127.0.0.1:8080" ||
		rows[0]["metadata"].(map[string]any)["zone"] != "a" || rows[0]["ttl_seconds"].(float64) < 30 || rows[0]["lease"] == "" {
		t.Errorf("ls payments -o json: %v", rows[0])
	}

	r = runRoster(t, env, "ls")
	if !regexp.MustCompile(`^SERVICE\s+INSTANCES\npayments\s+1\n$`).MatchString(r.stdout) {
		t.Errorf("ls:\n%s", r.stdout)
	}

	sent := time.Now()
	reg.interrupt()
	reg.waitLine("deregistered payments/p-1")
	watch.waitLine("- p-1 127.0.0.1:8080")
	if took := time.Since(sent); took > 10*time.Second {
		t.Errorf("watch saw p-1 leave %v after SIGINT; want at once, not at lease expiry", took)
	}
	watch.interrupt()
}

// TestRegisterConflict: a second register of the same service and ID takes
// the key over, the first reports the conflict, and takes the key back
// once the second leaves.
func TestRegisterConflict(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)
	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")

	first := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080")
	first.waitLine("registered payments/p-1 at 127.0.0.1:8080")
	watch.waitLine("+ p-1 127.0.0.1:8080")

	second := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:9090")
	second.waitLine("registered payments/p-1 at 127.0.0.1:9090")
	first.waitLine("conflict: discovery: instance owned by another registrar")
	watch.waitLine("~ p-1 127.0.0.1:9090")

	second.signal(syscall.SIGTERM) // as a service manager stops it
	if code := second.wait(); code != 0 {
		t.Fatalf("register exited %d after SIGTERM; want 0", code)
	}
	second.waitLine("deregistered payments/p-1")
	first.waitLine("registered again payments/p-1 at 127.0.0.1:8080")
	// "- p-1 127.0.0.1:9090" then "+ p-1 127.0.0.1:8080", or, when the
	// delete and the put back reach the watch together, the one set after
	// both: "~ p-1 127.0.0.1:8080".
	if line := watch.waitLine("p-1 127.0.0.1:8080"); !strings.HasPrefix(line, "+ ") && !strings.HasPrefix(line, "~ ") {
		t.Errorf("watch printed %q; want p-1 back at 127.0.0.1:8080", line)
	}
	first.interrupt()
	watch.waitLine("- p-1 127.0.0.1:8080")
	watch.interrupt()
}

// TestDeregister removes the instance of a process that died without
// deregistering (its lease would keep it for a minute).
func TestDeregister(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)
	reg := startRoster(t, env, "register", "--service", "payments", "--id", "p-2", "--address", "127.0.0.1:8082", "--ttl", "60s")
	reg.waitLine("registered payments/p-2")
	reg.signal(syscall.SIGKILL)
	reg.wait()

	r := runRoster(t, env, "ls", "payments")
	if !strings.Contains(r.stdout, "p-2") {
		t.Fatalf("ls after kill:\n%s", r.stdout)
	}
	r = runRoster(t, env, "deregister", "--service", "payments", "--id", "p-2")
	if r.code != 0 || r.stdout != "deleted payments/p-2\n" || r.stderr != "" {
		t.Fatalf("deregister: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runRoster(t, env, "ls", "payments")
	if r.stdout != "no instances of payments under /roster/services\n" {
		t.Errorf("ls after deregister:\n%s", r.stdout)
	}
	r = runRoster(t, env, "deregister", "--service", "payments", "--id", "p-2")
	if want := "roster: payments/p-2 not found (no key /roster/services/payments/p-2)\n"; r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("deregister again: exit %d, stdout %q, stderr %q; want 1 and %q", r.code, r.stdout, r.stderr, want)
	}
}

// TestBadInput: the binary rejects bad input with one line naming the flag
// and a non-zero exit status, without a stack trace or usage dump.
func TestBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"register", "--address", "127.0.0.1:8080"}, "roster: --service is required\n"},
		{[]string{"register", "--service", "payments", "--address", "127.0.0.1"}, `roster: invalid --address "127.0.0.1": Address is not host:port`},
		{[]string{"register", "--service", "payments", "--address", "127.0.0.1:8080", "--meta", "zone"}, `roster: invalid --meta "zone": want key=value` + "\n"},
		{[]string{"deregister", "--service", "payments"}, "roster: --id is required\n"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runRoster(t, nil, c.args...)
			if r.code == 0 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, c.want) || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want non-zero and one line %q", r.code, r.stdout, r.stderr, c.want)
			}
		})
	}
}

// TestUnreachableEtcd: every command that talks to etcd fails within about
// the timeout with one line naming the endpoint and the timeout, and
// asking whether roster dev runs.
func TestUnreachableEtcd(t *testing.T) {
	t.Parallel()
	cases := [][]string{
		{"ls"},
		{"ls", "payments"},
		{"watch", "payments"},
		{"register", "--service", "payments", "--address", "127.0.0.1:8080"},
		{"deregister", "--service", "payments", "--id", "p-1"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := runRoster(t, nil, append(args, "--endpoints", "127.0.0.1:1", "--timeout", "1s")...)
			want := "roster: etcd at 127.0.0.1:1 did not answer within 1s: context deadline exceeded (nothing answers there: is `roster dev` running?)\n"
			if r.code != 1 || r.stderr != want {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
			}
			if r.took > 8*time.Second {
				t.Errorf("took %v; want about 1s", r.took)
			}
		})
	}
}

// TestWatchSurvivesRestart: a watch started before etcd restarts keeps
// following the service afterwards, and a registration made before the
// restart survives it.
func TestWatchSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)
	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")
	first := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8081")
	first.waitLine("registered payments/p-1")
	watch.waitLine("+ p-1 127.0.0.1:8081")

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}

	second := startRoster(t, env, "register", "--service", "payments", "--id", "p-2", "--address", "127.0.0.1:8082")
	second.waitLine("registered payments/p-2")
	watch.waitLine("+ p-2 127.0.0.1:8082")
	second.interrupt()
	watch.waitLine("- p-2 127.0.0.1:8082")
	for _, line := range watch.lines() {
		if strings.HasPrefix(line, "- p-1") {
			t.Errorf("watch saw p-1 leave across the restart: %q", line)
		}
	}
	first.interrupt()
	watch.interrupt()
}

// TestLsAndWatchEscapeRegistryValues: anyone who may write under the prefix
// can put newlines, terminal escape sequences and Unicode controls in
// metadata. ls and watch print such keys and values quoted, with Go's
// escapes, so that they cannot forge lines such as "+ id address" or
// repaint the operator's terminal: each instance stays one line.
func TestLsAndWatchEscapeRegistryValues(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	env := endpointEnv(srv)
	put := func(meta map[string]string) {
		t.Helper()
		v, err := json.Marshal(map[string]any{"service": "payments", "id": "p-1", "address": "127.0.0.1:8080", "metadata": meta})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := cli.Put(ctx, "/roster/services/payments/p-1", string(v)); err != nil {
			t.Fatal(err)
		}
	}
	put(map[string]string{
		"note":  "x\n+ p-9 10.6.6.6:443",
		"zone":  "\x1b[2K\x1b[31mred\x1b[0m",
		"dir":   "\u202eevil",
		"a b":   "c,d=e",
		"quote": `"q"`,
		"plain": "v1.4.2",
	})
	meta := `"a b"="c,d=e",dir="\u202eevil",note="x\n+ p-9 10.6.6.6:443",plain=v1.4.2,quote="\"q\"",zone="\x1b[2K\x1b[31mred\x1b[0m"`

	r := runRoster(t, env, "ls", "payments")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	row := regexp.MustCompile(`^p-1\s+127\.0\.0\.1:8080\s+` + regexp.QuoteMeta(meta) + `\s+-$`)
	if r.code != 0 || len(lines) != 2 || !row.MatchString(lines[1]) || r.stderr != "" {
		t.Errorf("ls payments: exit %d\nstdout:\n%q\nstderr:\n%q\nwant the header and one line with metadata %s", r.code, r.stdout, r.stderr, meta)
	}

	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 1 instance")
	if got, want := watch.waitLine("p-1"), "+ p-1 127.0.0.1:8080 "+meta; got != want {
		t.Errorf("watch printed %q; want %q", got, want)
	}
	// A change, which comes as a watch event.
	put(map[string]string{"zone": "a\r- p-1 127.0.0.1:8080\x07"})
	watch.waitLine("payments: 1 instance")
	if got, want := watch.waitLine("p-1"), `~ p-1 127.0.0.1:8080 zone="a\r- p-1 127.0.0.1:8080\a"`; got != want {
		t.Errorf("watch printed %q; want %q", got, want)
	}
	watch.interrupt()
	for _, line := range watch.lines() {
		if strings.HasPrefix(line, "+ p-9") || strings.HasPrefix(line, "- p-1") || strings.ContainsAny(line, "\x1b\r\a\u202e") {
			t.Errorf("watch printed a forged or raw line %q", line)
		}
	}
}

// TestTLSSettingsWithPlainTextEndpoint: --cacert (or ROSTER_CACERT) with
// an http:// endpoint asks for TLS that the etcd client would drop,
// registering in plain text and sending the password in clear. register
// fails at once with one line naming the endpoint, exit status 2, and
// writes nothing to etcd: here a plain-text etcd that the command would
// have reached. A password without any TLS setting is the user's choice:
// the command works and warns.
func TestTLSSettingsWithPlainTextEndpoint(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	host := srv.Endpoints()[0]
	ca := writeCACert(t)
	revision := func() int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		resp, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	before := revision()
	register := []string{"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080"}
	want := `roster: etcd: invalid config: Endpoints[0] "http://` + host + `" is a plain-text http:// endpoint but TLS is set`
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"flags", nil, append(register, "--cacert", ca, "--endpoints", "http://"+host)},
		{"environment", []string{"ROSTER_CACERT=" + ca, "ROSTER_ENDPOINTS=http://" + host, "ROSTER_USERNAME=svc", "ROSTER_PASSWORD=s3cret-pw"}, register},
	}
	for _, c := range cases {
		r := runRoster(t, c.env, c.args...)
		if r.code != exitInput || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d and one line %q...", c.name, r.code, r.stdout, r.stderr, exitInput, want)
		}
		if strings.Contains(r.stderr, "s3cret-pw") {
			t.Errorf("%s: stderr %q shows the password", c.name, r.stderr)
		}
	}
	if after := revision(); after != before {
		t.Errorf("etcd revision went from %d to %d: something was written", before, after)
	}

	r := runRoster(t, []string{"ROSTER_PASSWORD=s3cret-pw"}, "ls", "--endpoints", host, "--user", "svc")
	warning := "roster: warning: the password is sent to etcd in clear: " + host + " does not use TLS (give https:// endpoints, or --cacert)\n"
	if r.code != exitOK || r.stdout != "no services under /roster/services\n" || r.stderr != warning {
		t.Errorf("ls with a password over plain text: exit %d, stdout %q, stderr %q; want 0 and the warning %q", r.code, r.stdout, r.stderr, warning)
	}
}
