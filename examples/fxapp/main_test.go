package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/internal/linebuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	var stdout, stderr linebuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, nil, &stdout, &stderr); err != nil {
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
