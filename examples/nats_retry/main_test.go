package main

import (
	"bytes"
	"context"
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
		lost     int
	}{
		{"cut", []string{
			"Registered node localhost:50000; the backend renews its key",
			"Watch: tracking 1 node(s)",
			">>> Cutting the network to NATS for 3s; NATS keeps running and expires the node's 1s key",
			"[WARN]  roster.nats: failed to renew instances, will retry",
			"Watch: NATS is unreachable; keeping the last known set",
			">>> Restoring the network",
			"Registered node localhost:50000 again: NATS had expired its key, and the backend wrote it again",
			"That was the whole story",
			"Interrupted: removing the node",
			"[INFO]  roster.nats: removed instances: instances=1",
			"Node localhost:50000 has left NATS. Bye.",
		}, 1},
		{"restart", []string{
			"Registered node localhost:50000; the backend renews its key",
			">>> Stopping NATS for 3s, longer than the 1s TTL",
			"[WARN]  roster.nats: cannot reach NATS",
			">>> Starting NATS again",
			"Registered node localhost:50000 again",
			"That was the whole story",
			"Node localhost:50000 has left NATS. Bye.",
		}, -1}, // NATS may expire the key at its first check after the restart, or not
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			story := runStory(t, "-scenario="+tc.scenario, "-ttl=1s", "-retry=100ms", "-timeout=300ms",
				"-pause=500ms", "-outage=3s")
			linebuf.WantInOrder(t, story, tc.story...)
			if lost := strings.Count(story, "NATS no longer holds node"); tc.lost >= 0 && lost != tc.lost {
				t.Errorf("the node was reported lost %d times; want %d", lost, tc.lost)
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

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-retry=0s"}, {"-outage=-1s"}, {"-no-such-flag"}, {"extra"}, {"-scenario=flood"}} {
		var stderr bytes.Buffer
		if err := run(context.Background(), args, &bytes.Buffer{}, &stderr); err == nil {
			t.Errorf("run(%q) succeeded; want an error", args)
		}
	}
}
