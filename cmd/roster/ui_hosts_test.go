package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/linebuf"
)

// statusFor GETs url naming host in the Host header ("" for the URL's).
func statusFor(t *testing.T, url, host string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestUIAllowHost: roster ui listening beyond loopback answers requests
// naming an IP address, localhost or an --allow-host name, and refuses
// other names (DNS rebinding; before, any Host was answered there); an
// invalid name is an input error.
func TestUIAllowHost(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	ui := startRoster(t, endpointEnv(srv), "ui", "--listen", "0.0.0.0:0", "--allow-host", "roster.example")
	url := uiURLOf(t, ui)
	cases := []struct {
		host string
		want int
	}{
		{"", http.StatusOK},
		{"localhost", http.StatusOK},
		{"roster.example:8500", http.StatusOK},
		{"attacker.example:8500", http.StatusForbidden},
	}
	for _, c := range cases {
		if got := statusFor(t, url, c.host); got != c.want {
			t.Errorf("Host %q: %d, want %d", c.host, got, c.want)
		}
	}
	ui.interrupt()

	r := runRoster(t, endpointEnv(srv), "ui", "--allow-host", "roster.example:8500")
	if r.code != exitInput || !strings.Contains(r.stderr, `invalid --allow-host "roster.example:8500"`) {
		t.Errorf("--allow-host with a port: exit %d, stderr %q; want %d and the name quoted", r.code, r.stderr, exitInput)
	}
}

// TestRegisterHTTPAllowHost: register --http answers requests naming an
// IP address or an --allow-host name, and refuses other names.
func TestRegisterHTTPAllowHost(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Setenv("ROSTER_ENDPOINTS", srv.Endpoints()[0])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &linebuf.Buffer{}, &linebuf.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080",
			"--http", "127.0.0.1:0", "--allow-host", "status.example"}, stdout, stderr)
	}()
	stdout.WaitFor(t, "registered payments/p-1", waitTimeout)
	stderr.WaitFor(t, "serving http://", waitTimeout)
	line := stderr.String()
	base := line[strings.Index(line, "http://"):]
	base = base[:strings.Index(base, "/metrics")]
	for _, path := range []string{"/status", "/metrics"} {
		if got := statusFor(t, base+path, ""); got != http.StatusOK {
			t.Errorf("%s by IP address: %d", path, got)
		}
		if got := statusFor(t, base+path, "status.example:9090"); got != http.StatusOK {
			t.Errorf("%s by the allowed name: %d", path, got)
		}
		if got := statusFor(t, base+path, "attacker.example:9090"); got != http.StatusForbidden {
			t.Errorf("%s by another name: %d, want 403", path, got)
		}
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("register exited %d; stderr %q", code, stderr.String())
	}
}
