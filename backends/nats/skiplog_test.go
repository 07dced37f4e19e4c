package nats_test

import (
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/linebuf"
	"github.com/roster-sd/roster/internal/testing/testlog"
)

// TestSkippedValueLoggedOncePerRevision: a value another writer stored
// that is not a valid instance is skipped by every read, and logged once
// per revision: three Resolves of one revision log one line, a new
// revision one more.
func TestSkippedValueLoggedOncePerRevision(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	logs := &linebuf.Buffer{}
	cfg := testConfig(t, srv.URL(), "roster")
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.MultiWriter(logs, testlog.Writer(t)), Level: hclog.Debug})
	b := newBackend(t, cfg)
	kv := rawKV(t, srv.URL(), "roster")
	const warning = "skipping a value that is not a valid instance"
	for rev := 1; rev <= 2; rev++ {
		if _, err := kv.Put(t.Context(), "payments.bogus", []byte("not json")); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if got, err := b.Resolve(t.Context(), "payments"); err != nil || len(got) != 0 {
				t.Fatalf("Resolve = %v, %v; want the empty set", got, err)
			}
		}
		if n := strings.Count(logs.String(), warning); n != rev {
			t.Errorf("%d warnings after 3 reads of %d revisions; want %d", n, rev, rev)
		}
	}
}
