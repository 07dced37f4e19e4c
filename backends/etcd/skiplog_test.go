package etcd_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/linebuf"
	"github.com/roster-sd/roster/internal/testing/testlog"
)

// TestSkippedValueLoggedOncePerRevision: another writer stores a value
// that is not a valid instance, here with a 1 MiB metadata key. Every
// read of the service skips it; the warning is logged once for that
// revision however many reads there are (each Resolve and the watch's
// first list logged it again, 2 MiB a line), once more for the next
// revision, and each line stays short.
func TestSkippedValueLoggedOncePerRevision(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	logs := &linebuf.Buffer{}
	cfg := testConfig(t, srv.Endpoints())
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.MultiWriter(logs, testlog.Writer(t)), Level: hclog.Debug})
	b := newBackend(t, cfg)
	register(t, b, instance("payments", "p-1"))
	ctx := context.Background()

	bad := `{"service":"payments","id":"bad","address":"127.0.0.1:1","metadata":{"` + strings.Repeat("k", 1<<20) + `\u0001":"v"}}`
	if _, err := cli.Put(ctx, b.Key("payments", "bad"), bad); err != nil {
		t.Fatal(err)
	}
	const warning = "skipping a value that is not a valid instance"
	want := []discovery.Instance{instance("payments", "p-1")}
	for range 3 {
		if got, err := b.Resolve(ctx, "payments"); err != nil || !discovery.EqualSets(got, want) {
			t.Fatalf("Resolve = %+v, %v; want only p-1", got, err)
		}
	}
	w, err := b.Watch(ctx, "payments")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(t, w)
	c.waitIDs(t, "[p-1]", waitFor)
	if n := strings.Count(logs.String(), warning); n != 1 {
		t.Errorf("%d warnings after 3 reads and a watch of the same revision; want 1", n)
	}

	// The next revision of the value is news: one more line, from the
	// watch's event, and none from the reads that follow.
	if _, err := cli.Put(ctx, b.Key("payments", "bad"), bad); err != nil {
		t.Fatal(err)
	}
	putRaw(t, cli, b, instance("payments", "p-2"))
	c.waitIDs(t, "[p-1 p-2]", waitFor)
	for range 2 {
		if _, err := b.Resolve(ctx, "payments"); err != nil {
			t.Fatal(err)
		}
	}
	text := logs.String()
	if n := strings.Count(text, warning); n != 2 {
		t.Errorf("%d warnings after a second revision; want 2", n)
	}
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 2048 {
			t.Errorf("a log line of %d bytes: %.200s...", len(line), line)
		}
	}
}
