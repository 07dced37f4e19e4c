package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// TestDevTemporaryDataDir: without --data-dir, roster dev keeps its data
// in a temporary folder named after roster dev (not after the test
// package etcdtest), and removes it on exit.
func TestDevTemporaryDataDir(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t))
	dev := startRoster(t, nil, "dev", "--port", port)
	dev.waitLine("etcd is serving on 127.0.0.1:" + port)
	line := dev.waitLine("data in ")
	dir, ok := strings.CutSuffix(strings.TrimPrefix(line, "data in "), " (removed on exit)")
	if !ok || !strings.HasPrefix(filepath.Base(dir), "roster-dev-etcd-") {
		t.Errorf("dev printed %q; want data in .../roster-dev-etcd-... (removed on exit)", line)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("data directory while dev runs: %v", err)
	}
	dev.interrupt()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data directory %s after dev: %v; want it removed", dir, err)
	}
}

// TestVerboseLoggerNames: with -v, the backend's log lines carry its
// logger name once ("roster.etcd"), not under a second "roster".
func TestVerboseLoggerNames(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	reg := startRoster(t, endpointEnv(srv), "register", "-v", "--service", "payments", "--address", "127.0.0.1:8080")
	reg.waitLine("registered payments/")
	reg.interrupt()
	stderr := reg.text(&reg.stderr)
	if !strings.Contains(stderr, " roster.etcd: ") || strings.Contains(stderr, "roster.roster") {
		t.Errorf("stderr with -v:\n%s\nwant lines from roster.etcd, none from roster.roster.etcd", stderr)
	}
}
