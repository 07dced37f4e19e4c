package etcdtest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/linebuf"
)

// put writes key=val within 5 s or fails t.
func put(t *testing.T, cli *clientv3.Client, key, val string, opts ...clientv3.OpOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, val, opts...); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// get reads key within timeout.
func get(cli *clientv3.Client, key string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", errors.New("key not found")
	}
	return string(resp.Kvs[0].Value), nil
}

// mustGet reads key within 10 s, enough for a client to reconnect after a
// restart, and compares it with want.
func mustGet(t *testing.T, cli *clientv3.Client, key, want string) {
	t.Helper()
	got, err := get(cli, key, 10*time.Second)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if got != want {
		t.Fatalf("get %s = %q, want %q", key, got, want)
	}
}

func TestServerPutGet(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	if !s.Running() || s.Etcd() == nil {
		t.Fatal("server not running after Start")
	}
	eps := s.Endpoints()
	if len(eps) != 1 {
		t.Fatalf("Endpoints() = %v, want one", eps)
	}
	if host, _, err := net.SplitHostPort(eps[0]); err != nil || host != "127.0.0.1" {
		t.Fatalf("Endpoints() = %v, want 127.0.0.1:port", eps)
	}
	if got, want := s.ClientURL(), "http://"+eps[0]; got != want {
		t.Fatalf("ClientURL() = %q, want %q", got, want)
	}
	if s.TLSConfig() != nil || s.CAFile() != "" || s.CertFile() != "" || s.KeyFile() != "" {
		t.Fatal("TLS material without WithTLS")
	}
	cfg := s.ClientConfig()
	if cfg.Username != "" || cfg.Password != "" || cfg.TLS != nil || cfg.DialTimeout != etcdtest.DefaultDialTimeout {
		t.Fatalf("ClientConfig() = %+v", cfg)
	}

	cli := etcdtest.Client(t, s)
	put(t, cli, "k", "v")
	mustGet(t, cli, "k", "v")
}

func TestServerStopRestart(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	cli := etcdtest.Client(t, s)
	eps := s.Endpoints()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	put(t, cli, "k", "before", clientv3.WithLease(lease.ID))

	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(start))
	if s.Running() || s.Etcd() != nil {
		t.Fatal("server still running after Stop")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := get(cli, "k", time.Second); err == nil {
		t.Fatal("Get succeeded while the server was stopped")
	} else {
		t.Logf("Get while stopped: %v", err)
	}

	start = time.Now()
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("Restart took %v", time.Since(start))
	if !s.Running() {
		t.Fatal("server not running after Restart")
	}
	if got := s.Endpoints(); got[0] != eps[0] {
		t.Fatalf("Endpoints() after Restart = %v, want %v", got, eps)
	}
	start = time.Now()
	mustGet(t, cli, "k", "before")
	t.Logf("the old client read again %v after Restart", time.Since(start))

	ttl, err := cli.TimeToLive(ctx, lease.ID)
	if err != nil {
		t.Fatalf("TimeToLive: %v", err)
	}
	if ttl.TTL <= 0 {
		t.Fatalf("lease TTL after Restart = %d, want > 0", ttl.TTL)
	}

	// Restart of a running server bounces it.
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	put(t, cli, "k", "after")
	mustGet(t, cli, "k", "after")
}

// TestServerStopCutsStreams checks that Stop does not wait for open
// streams (etcd's own Close would wait 6 s for a lease keep-alive).
func TestServerStopCutsStreams(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	cli := etcdtest.Client(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lease, err := cli.Grant(ctx, 10)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	ka, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		t.Fatalf("keep-alive: %v", err)
	}
	<-ka
	wch := cli.Watch(ctx, "w")

	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Stop took %v with open streams, want < 3s", took)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	put(t, cli, "w", "x")
	select {
	case resp := <-wch:
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		if len(resp.Events) == 0 || string(resp.Events[0].Kv.Value) != "x" {
			t.Fatalf("watch response %+v, want the put of x", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch saw nothing after Restart")
	}
}

func TestServerKill(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	cli := etcdtest.Client(t, s)
	put(t, cli, "k", "v")
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if s.Running() {
		t.Fatal("server running after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	mustGet(t, cli, "k", "v")
}

func TestServerClose(t *testing.T) {
	t.Parallel()
	s, err := etcdtest.New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	dir := s.DataDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("data dir: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Running() {
		t.Fatal("server running after Close")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data dir after Close: %v, want it removed", err)
	}
	if err := s.Restart(); !errors.Is(err, etcdtest.ErrClosed) {
		t.Fatalf("Restart after Close = %v, want ErrClosed", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop after Close: %v", err)
	}
}

func TestWithDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	s1 := etcdtest.Start(t, etcdtest.WithDataDir(dir))
	if s1.DataDir() != dir {
		t.Fatalf("DataDir() = %q, want %q", s1.DataDir(), dir)
	}
	put(t, etcdtest.Client(t, s1), "k", "kept")
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("data dir after Close: %v, want it kept", err)
	}

	s2 := etcdtest.Start(t, etcdtest.WithDataDir(dir))
	mustGet(t, etcdtest.Client(t, s2), "k", "kept")
}

func TestWithClientPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	s := etcdtest.Start(t, etcdtest.WithClientPort(port))
	if got, want := s.Endpoints()[0], "127.0.0.1:"+strconv.Itoa(port); got != want {
		t.Fatalf("Endpoints()[0] = %q, want %q", got, want)
	}
	put(t, etcdtest.Client(t, s), "k", "v")
}

func TestWithLogOutput(t *testing.T) {
	t.Parallel()
	var buf linebuf.Buffer
	s := etcdtest.Start(t, etcdtest.WithLogOutput(&buf))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if buf.Len() == 0 {
		t.Fatal("WithLogOutput: no logs written")
	}
}

func TestInvalidOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opt  etcdtest.Option
	}{
		{"port zero", etcdtest.WithClientPort(0)},
		{"port too large", etcdtest.WithClientPort(70000)},
		{"empty user", etcdtest.WithAuth("", "pw")},
		{"empty password", etcdtest.WithAuth("root", "")},
		{"empty data dir", etcdtest.WithDataDir("")},
		{"nil log output", etcdtest.WithLogOutput(nil)},
		{"nil logger", etcdtest.WithLogger(nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := etcdtest.New(tc.opt); err == nil {
				s.Close()
				t.Fatal("New succeeded, want an error")
			}
			if c, err := etcdtest.NewCluster(3, tc.opt); err == nil {
				c.Close()
				t.Fatal("NewCluster succeeded, want an error")
			}
		})
	}
	if c, err := etcdtest.NewCluster(0); err == nil {
		c.Close()
		t.Fatal("NewCluster(0) succeeded, want an error")
	}
}
