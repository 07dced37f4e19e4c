package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// TestRegisterHealthWeightZone: register --weight --zone --health-http
// publishes the instance not_ready while a real HTTP server's /healthz
// answers 503, serving once it answers 200, not_ready again with the
// check's output when it fails; watch and ls show condition, weight and
// zone (ls with the CONDITION, WEIGHT and ZONE columns).
func TestRegisterHealthWeightZone(t *testing.T) {
	t.Parallel()
	var code atomic.Int64
	code.Store(http.StatusServiceUnavailable)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
		w.Write([]byte("warming up"))
	}))
	defer hs.Close()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)

	watch := startRoster(t, env, "watch", "payments")
	watch.waitLine("payments: 0 instances")
	reg := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080",
		"--weight", "200", "--zone", "eu-west-1a", "--health-http", hs.URL+"/healthz",
		"--health-period", "50ms", "--health-failure-threshold", "1", "--ttl", "60s", "--http", "127.0.0.1:0")
	served := reg.waitStderr("serving http://")
	metricsURL := served[strings.Index(served, "http://"):]
	metricsURL = metricsURL[:strings.Index(metricsURL, "/metrics")+len("/metrics")]
	line := reg.waitLine("registered payments/p-1")
	if !regexp.MustCompile(`^registered payments/p-1 at 127\.0\.0\.1:8080 \(lease [0-9a-f]+\), not_ready ".+"$`).MatchString(line) {
		t.Errorf("register printed %q; want it registered not_ready", line)
	}
	watch.waitLine(`+ p-1 127.0.0.1:8080 [not_ready `)

	code.Store(http.StatusOK)
	reg.waitLine("payments/p-1 is serving")
	watch.waitLine("~ p-1 127.0.0.1:8080 [weight=200 zone=eu-west-1a]")
	r := runRoster(t, env, "ls", "payments")
	want := regexp.MustCompile(`^ID\s+ADDRESS\s+CONDITION\s+WEIGHT\s+ZONE\s+METADATA\s+TTL\np-1\s+127\.0\.0\.1:8080\s+serving\s+200\s+eu-west-1a\s+-\s+\d+\n$`)
	if r.code != 0 || !want.MatchString(r.stdout) {
		t.Errorf("ls payments: exit %d\n%s", r.code, r.stdout)
	}
	r = runRoster(t, env, "ls", "payments", "-o", "json")
	if !strings.Contains(r.stdout, `"weight": 200`) || !strings.Contains(r.stdout, `"zone": "eu-west-1a"`) || strings.Contains(r.stdout, `"condition"`) {
		t.Errorf("ls payments -o json:\n%s\nwant weight and zone, and no condition (serving)", r.stdout)
	}

	// The checks are counted in the process's own metrics (--http): the
	// failures while it warmed up, then the passes.
	scrape := func() string {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	counted := regexp.MustCompile(`(?m)^roster_health_checks_total\{outcome="(pass|fail)"\} ([1-9][0-9]*)$`)
	var text string
	testwait.Until(t, waitTimeout, "passes and failures of the health check in --http's metrics", func() bool {
		text = scrape()
		seen := map[string]bool{}
		for _, m := range counted.FindAllStringSubmatch(text, -1) {
			seen[m[1]] = true
		}
		return seen["pass"] && seen["fail"]
	})
	if !regexp.MustCompile(`(?m)^roster_health_check_duration_seconds_count [1-9]`).MatchString(text) {
		t.Errorf("no check duration in the metrics:\n%s", text)
	}

	code.Store(http.StatusInternalServerError)
	line = reg.waitLine("payments/p-1 is not_ready")
	if !strings.Contains(line, "500 Internal Server Error: warming up") {
		t.Errorf("register printed %q; want the check's output", line)
	}
	watch.waitLine(`~ p-1 127.0.0.1:8080 [not_ready "http GET`)
	r = runRoster(t, env, "ls", "payments")
	if !regexp.MustCompile(`p-1\s+127\.0\.0\.1:8080\s+not_ready ".*500 Internal Server Error: warming up"\s+200\s+eu-west-1a`).MatchString(r.stdout) {
		t.Errorf("ls payments:\n%s", r.stdout)
	}

	reg.interrupt()
	reg.waitLine("deregistered payments/p-1")
	watch.waitLine("- p-1 127.0.0.1:8080")
	watch.interrupt()
}

// TestRegisterRejectsServingFlags: a bad --weight, --zone or health flag
// is an input error naming the flag, and nothing is registered.
func TestRegisterRejectsServingFlags(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)
	base := []string{"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--weight", "10001"}, "--weight"},
		{[]string{"--weight", "-1"}, "--weight"},
		{[]string{"--zone", "eu/west"}, "--zone"},
		{[]string{"--health-http", "localhost:80"}, "--health-http"},
		{[]string{"--health-tcp", "nope"}, "--health-tcp"},
		{[]string{"--health-tcp", "127.0.0.1:1", "--health-grpc", "127.0.0.1:2"}, "at most one"},
		{[]string{"--health-tcp", "127.0.0.1:1", "--health-period", "-1s"}, "Period"},
	} {
		r := runRoster(t, env, append(base, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("register %v: exit %d, stderr %q; want an error naming %s", tc.args, r.code, r.stderr, tc.want)
		}
	}
	r := runRoster(t, env, "ls", "payments")
	if !strings.Contains(r.stdout, "no instances of payments") {
		t.Errorf("ls after the rejected registrations:\n%s", r.stdout)
	}
}
