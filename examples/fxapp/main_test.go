package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/internal/testing/linebuf"
)

// runMainEnv, set in a child process's environment, makes the test
// binary run the program's main instead of the tests: the program itself,
// signal handling included, without building it a second time.
const runMainEnv = "FXAPP_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = append([]string{"fxapp"}, strings.Fields(os.Getenv(runMainEnv+"_ARGS"))...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	var stdout, stderr linebuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-once"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())

	// The story, in order.
	linebuf.WantInOrder(t, out,
		"Started an embedded etcd at 127.0.0.1:",
		"Started hello-1",
		"[hello-1] peers: hello-1",
		"Started hello-2",
		"Started hello-3",
		`Resolved "hello": 3 instance(s)`,
		"  hello-1: serving, weight 100, zone eu-west-1a",
		"  hello-2: serving, weight 200, zone eu-west-1b",
		"  hello-3: serving, weight 300, zone eu-west-1a",
		`GET hello-1/hello -> "hello from hello-1"`,
		`GET hello-2/hello -> "hello from hello-2"`,
		`GET hello-3/hello -> "hello from hello-3"`,
		"GET hello-1/status -> 200 ready: every registration is registered",
		"GET hello-1/metrics ->",
		"  roster_backend_connected 1",
		"  roster_backend_retry_attempts_total 0",
		"  roster_lease_remaining_seconds ",
		`  roster_registrations{service="hello",state="registered"} 1`,
		"Stopped hello-1",
		"Stopped hello-2",
		"Stopped hello-3",
		`All replicas stopped; "hello" has no instances left`,
	)
	// Every replica saw every peer arrive, and the survivors saw the
	// stopped ones leave.
	for _, line := range []string{
		"[hello-1] peers: hello-1 hello-2 hello-3",
		"[hello-2] peers: hello-1 hello-2 hello-3",
		"[hello-3] peers: hello-1 hello-2 hello-3",
		"[hello-2] peers: hello-2 hello-3",
		"[hello-3] peers: hello-2 hello-3",
		"[hello-3] peers: hello-3",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("output lacks %q", line)
		}
	}
	// Each replica drained, then left the registry before its server
	// stopped, and revoked its lease. The backend revokes the idle lease on its own
	// goroutine once the Deregister is written, so that line may come
	// before or after the module's.
	for _, name := range []string{"hello-1", "hello-2", "hello-3"} {
		linebuf.WantInOrder(t, stderr.String(),
			name+".roster.etcd: registered",
			name+".roster.fx: draining before deregistering")
		linebuf.WantInOrder(t, stderr.String(),
			name+".roster.etcd: registered",
			name+".roster.etcd: revoked lease")
	}
}

// TestServesUntilInterrupt runs the program as a user does, without -once:
// it keeps its replicas up, answering /status, until it gets SIGINT, and
// then stops them one by one and exits 0.
func TestServesUntilInterrupt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", runMainEnv+"_ARGS=-replicas 2")
	var stderr linebuf.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var out linebuf.Buffer
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	}()
	// waitLine waits for a line matching re, and returns its submatches.
	waitLine := func(re *regexp.Regexp) []string {
		t.Helper()
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("output ended before a line matching %q", re)
				}
				if m := re.FindStringSubmatch(line); m != nil {
					return m
				}
			case <-ctx.Done():
				t.Fatalf("no line matching %q: %v", re, ctx.Err())
			}
		}
	}
	addr := waitLine(regexp.MustCompile(`^hello-1 serves (http://\S+) `))[1]
	waitLine(regexp.MustCompile(`^Press Ctrl\+C`))

	// Up and serving: what the README tells the user to curl.
	for _, path := range []string{"/status", "/metrics"} {
		code, body, err := getStatus(ctx, addr+path)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET %s%s while serving: %d %v\n%s", addr, path, code, err, body)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitLine(regexp.MustCompile(`^Interrupted: stopping the replicas$`))
	waitLine(regexp.MustCompile(`^Stopped hello-1$`))
	waitLine(regexp.MustCompile(`^Stopped hello-2$`))
	waitLine(regexp.MustCompile(`^All replicas stopped; "hello" has no instances left$`))
	for range lines {
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
	if _, _, err := getStatus(context.Background(), addr+"/status"); err == nil {
		t.Errorf("%s/status still answers after the program exited", addr)
	}
}
