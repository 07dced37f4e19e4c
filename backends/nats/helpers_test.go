package nats_test

import (
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/internal/testing/testlog"
	"github.com/roster-sd/roster/retry"
)

// testTTL is short so that fault tests run in seconds (nats-server counts
// message TTLs in whole seconds).
const testTTL = 2 * time.Second

// fastRetry keeps fault tests quick.
var fastRetry = retry.Policy{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond}

// testConfig is a Config for endpoint and bucket with a short TTL and fast
// retries, logging to t.
func testConfig(t testing.TB, endpoint, bucket string) nats.Config {
	return nats.Config{
		Endpoints:      []string{endpoint},
		Bucket:         bucket,
		TTL:            testTTL,
		Retry:          fastRetry,
		ReconnectDelay: 20 * time.Millisecond,
		// The default: under -race on a busy machine the in-process
		// server's answers take seconds (2 s timed renewals and Registers
		// out beside two busy loops).
		RequestTimeout: nats.DefaultRequestTimeout,
		Logger:         testlog.New(t),
	}
}

// newBackend starts a Backend closed at the end of the test.
func newBackend(t testing.TB, cfg nats.Config) *nats.Backend {
	t.Helper()
	b, err := nats.New(cfg)
	if err != nil {
		t.Fatalf("nats.New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}
