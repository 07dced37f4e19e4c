package main

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// uiURLOf waits for the "web view on URL" line of a roster ui or roster
// dev --ui process and returns the URL.
func uiURLOf(t *testing.T, p *proc) string {
	t.Helper()
	line := p.waitLine("web view on http://")
	_, rest, _ := strings.Cut(line, "web view on ")
	url, _, _ := strings.Cut(rest, " ")
	return url
}

// eventsHolding opens the event stream at url and reads it until each of
// wants has been in an event (the first, the whole state, or one of the
// changes after it), and returns the events read.
func eventsHolding(t *testing.T, url string, wants ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("GET %sevents: Content-Type %q", url, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var read []string
	seen := make(map[string]bool)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		read = append(read, data)
		for _, w := range wants {
			seen[w] = seen[w] || strings.Contains(data, w)
		}
		if len(seen) == len(wants) && !slices.Contains(slices.Collect(maps.Values(seen)), false) {
			return strings.Join(read, "\n")
		}
	}
	t.Fatalf("the event stream ended (%v) before events holding all of %q:\n%s", sc.Err(), wants, strings.Join(read, "\n"))
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDevUI: roster dev --ui serves the web view of its own etcd, and an
// instance that roster register adds shows up in the event stream.
func TestDevUI(t *testing.T) {
	t.Parallel()
	dev := startRoster(t, nil, "dev", "--port", "0", "--ui=127.0.0.1:0")
	ep := strings.TrimPrefix(dev.waitLine("export ROSTER_ENDPOINTS="), "export ROSTER_ENDPOINTS=")
	url := uiURLOf(t, dev)
	if code, body := get(t, url); code != http.StatusOK || !strings.Contains(body, `<script src="app.js"`) {
		t.Fatalf("GET %s: %d\n%s", url, code, body)
	}
	reg := startRoster(t, []string{"ROSTER_ENDPOINTS=" + ep},
		"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080", "--meta", "zone=a")
	reg.waitLine("registered payments/p-1")
	// The instance at once, with its lease, and the lease's TTL once read.
	eventsHolding(t, url, `"registry":"roster dev: etcd `+ep+` /roster/services","status":{"loaded":true,"reachable":true}`,
		`"id":"p-1","address":"127.0.0.1:8080","metadata":[["zone","a"]],"weight":100,"lease":"`, `":{"ttl_ms":1`)
	reg.interrupt()
	dev.interrupt()
	if !strings.Contains(strings.Join(dev.lines(), "\n"), "etcd stopped") {
		t.Errorf("dev did not stop etcd:\n%s", strings.Join(dev.lines(), "\n"))
	}
}

// TestUIListen: ui serves on loopback by default, warns when told to
// listen elsewhere, and refuses an address it cannot use.
func TestUIListen(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)

	ui := startRoster(t, endpointEnv(srv), "ui", "--listen", "0.0.0.0:0")
	url := uiURLOf(t, ui)
	if code, _ := get(t, url); code != http.StatusOK {
		t.Fatalf("GET %s: %d", url, code)
	}
	ui.interrupt()
	if stderr := ui.text(&ui.stderr); !strings.Contains(stderr, "roster: warning: the web view listens on 0.0.0.0:") ||
		!strings.Contains(stderr, "not only on loopback") {
		t.Errorf("no warning about a non-loopback address; stderr:\n%s", stderr)
	}

	r := runRoster(t, endpointEnv(srv), "ui", "--listen", "8500")
	if r.code != exitInput || !strings.Contains(r.stderr, `invalid web view address "8500"`) {
		t.Errorf("--listen 8500: exit %d, stderr %q; want %d and the address named", r.code, r.stderr, exitInput)
	}
	busy := startRoster(t, endpointEnv(srv), "ui", "--listen", "127.0.0.1:0")
	addr := strings.TrimSuffix(strings.TrimPrefix(uiURLOf(t, busy), "http://"), "/")
	r = runRoster(t, endpointEnv(srv), "ui", "--listen", addr)
	if r.code != exitFailure || !strings.Contains(r.stderr, "cannot serve the web view on "+addr) {
		t.Errorf("--listen %s (taken): exit %d, stderr %q; want %d and the address named", addr, r.code, r.stderr, exitFailure)
	}
	busy.interrupt()
}

// TestUIHelp: roster ui --help says where it listens and what it shows.
func TestUIHelp(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runInProcess(t, "ui", "--help")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"roster ui [flags]", "--listen string", defaultUIListen, "--endpoints", "read-only"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runInProcess(t, "dev", "--help")
	if code != exitOK || !strings.Contains(stdout, "--ui string[=\""+defaultUIListen+"\"]") {
		t.Errorf("dev --help lacks --ui:\n%s", stdout)
	}
}

// TestDevUINATS: roster dev --backend nats --ui serves the web view of its
// own NATS: an instance shows with the time left on its key, and a
// service that appears later is found without listing the bucket again.
func TestDevUINATS(t *testing.T) {
	t.Parallel()
	dev := startRoster(t, nil, "dev", "--backend", "nats", "--port", "0", "--ui=127.0.0.1:0")
	ep := strings.TrimPrefix(dev.waitLine("export ROSTER_ENDPOINTS="), "export ROSTER_ENDPOINTS=")
	url := uiURLOf(t, dev)
	env := []string{"ROSTER_BACKEND=nats", "ROSTER_ENDPOINTS=" + ep}
	reg := startRoster(t, env, "register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080", "--meta", "zone=a")
	reg.waitLine("registered payments/p-1")
	eventsHolding(t, url, `"registry":"roster dev: NATS `+ep+` bucket roster","status":{"loaded":true,"reachable":true}`,
		`"id":"p-1","address":"127.0.0.1:8080","metadata":[["zone","a"]],"weight":100,"lease":"`, `":{"ttl_ms":1`)
	orders := startRoster(t, env, "register", "--service", "orders", "--id", "o-1", "--address", "127.0.0.1:8081")
	orders.waitLine("registered orders/o-1")
	eventsHolding(t, url, `"id":"o-1","address":"127.0.0.1:8081"`)
	orders.interrupt()
	reg.interrupt()
	dev.interrupt()
	dev.waitLine("NATS stopped")
}

// firstEventHolding opens the event stream at url and returns the events
// read until one holds want.
func firstEventHolding(t *testing.T, url, want string) string {
	t.Helper()
	return eventsHolding(t, url, want)
}
