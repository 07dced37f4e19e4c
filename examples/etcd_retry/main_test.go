package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/internal/testing/linebuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestStory runs the demo with short timings and checks that it tells the
// whole story, in order, and exits cleanly on "Ctrl+C".
func TestStory(t *testing.T) {
	cases := []struct {
		scenario string
		story    []string
	}{
		{"restart", []string{
			"Connected to etcd at 127.0.0.1:",
			"Registered node localhost:50000 with lease ID ",
			"Currently tracking 1 node(s)",
			">>> Stopping etcd for 3s, longer than the 1s lease TTL",
			"[WARN]  roster.etcd: keep-alive failed, will retry",
			"[WARN]  roster.etcd: failed to maintain lease, retrying: node=localhost:50000",
			"[WARN]  roster.etcd: failed to maintain lease, retrying: node=localhost:50000",
			">>> Starting etcd again",
			": the same lease, kept through etcd's restart, and the node never left",
			"Interrupted: revoking the lease",
			"[INFO]  roster.etcd: revoked lease",
			"Node localhost:50000 has left etcd. Bye.",
		}},
		{"cut", []string{
			"Connected to etcd at 127.0.0.1:",
			"Registered node localhost:50000 with lease ID ",
			"Currently tracking 1 node(s)",
			">>> Cutting the network to etcd for 3s; etcd keeps running and expires the 1s lease",
			"[WARN]  roster.etcd: keep-alive failed, will retry",
			"[WARN]  roster.etcd: failed to maintain lease, retrying: node=localhost:50000",
			"[WARN]  roster.etcd: failed to maintain lease, retrying: node=localhost:50000",
			">>> Restoring the network",
			// The backend learns it from the grant ("lease expired, granted
			// it again") or, first, from its own-key watch ("instance
			// removed from etcd, restoring"): either way, once.
			"etcd no longer holds node localhost:50000 (",
			": etcd had expired the lease and dropped the node; the backend had the lease granted again, under the same ID",
			"Interrupted: revoking the lease",
			"[INFO]  roster.etcd: revoked lease",
			"Node localhost:50000 has left etcd. Bye.",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			story := runStory(t, "-scenario="+tc.scenario, "-ttl=1s", "-retry=100ms", "-timeout=300ms",
				"-report=500ms", "-pause=600ms", "-outage=3s")
			linebuf.WantInOrder(t, story, tc.story...)
			wantGrowingDelays(t, story)
			lost := strings.Count(story, "etcd no longer holds node")
			if want := map[string]int{"restart": 0, "cut": 1}[tc.scenario]; lost != want {
				t.Errorf("the node was reported lost %d times; want %d", lost, want)
			}
		})
	}
}

// runStory runs the demo until it has told its story, then interrupts it
// and returns what it printed.
func runStory(t *testing.T, args ...string) string {
	out := &linebuf.Buffer{}
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, args, out, out) }()

	out.WaitFor(t, "That was the whole story", 60*time.Second)
	interrupt() // Ctrl+C
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not return after the interrupt\n%s", out)
	}
	story := out.String()
	t.Logf("output:\n%s", story)
	return story
}

// wantGrowingDelays checks that the retries wait longer and longer.
func wantGrowingDelays(t *testing.T, story string) {
	t.Helper()
	var delays []time.Duration
	for _, m := range regexp.MustCompile(`retry_in=(\S+)`).FindAllStringSubmatch(story, -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("retry_in=%s: %v", m[1], err)
		}
		delays = append(delays, d)
	}
	if len(delays) < 2 {
		t.Fatalf("saw %d retries (%v); want at least 2", len(delays), delays)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Errorf("retry delays %v do not grow", delays)
			break
		}
	}
}

func TestBadFlags(t *testing.T) {
	cases := [][]string{
		{"-report=0s"},
		{"-cycles=-1"},
		{"-no-such-flag"},
		{"extra"},
		{"-scenario=flood"},
	}
	for _, args := range cases {
		var stderr bytes.Buffer
		if err := run(context.Background(), args, &bytes.Buffer{}, &stderr); err == nil {
			t.Errorf("run(%q) succeeded; want an error", args)
		}
	}
}
