package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/statushttp"
)

// TestDevRestartWithoutDataReregisters is a newcomer's path: roster dev
// (its default, a fresh temporary registry), a few roster register
// processes, dev stopped with Ctrl+C and started again on the same port
// without --data-dir. The registry comes back empty under the same
// identity; every register process must see that its instance is gone and
// put it back: its /status says registered again, since a moment no later
// than recoverWithin after the new dev said it was serving. (-v: on a
// failure, each process's log says what it saw.) Six processes, as in
// issue #23: on etcd, the ones that come back first write to the new
// registry, so that its revision may already have passed the one a later
// process's watch resumes from; on NATS, the bucket is gone and must be
// created again, at once rather than after the retry policy's backoff.
func TestDevRestartWithoutDataReregisters(t *testing.T) {
	t.Parallel()
	for _, backend := range []struct{ name, serving, scheme string }{
		{"etcd", "etcd is serving on 127.0.0.1:", ""},
		{"nats", "NATS is serving on nats://127.0.0.1:", "nats://"},
	} {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			devRestartReregisters(t, backend.name, backend.serving, backend.scheme)
		})
	}
}

func devRestartReregisters(t *testing.T, backend, servingLine, scheme string) {
	const (
		processes     = 6
		recoverWithin = 2 * time.Second
	)
	port := strconv.Itoa(freePort(t))
	dev := startRoster(t, nil, "dev", "--backend", backend, "--port", port)
	dev.waitLine(servingLine + port)
	env := []string{"ROSTER_BACKEND=" + backend, "ROSTER_ENDPOINTS=" + scheme + "127.0.0.1:" + port}

	statusURLs := make([]string, processes)
	for i := range processes {
		id := fmt.Sprintf("p-%d", i+1)
		reg := startRoster(t, env, "-v", "register", "--service", "payments", "--id", id,
			"--address", fmt.Sprintf("127.0.0.1:%d", 8080+i), "--http", "127.0.0.1:0")
		reg.waitLine("registered payments/" + id + " at ")
		line := reg.waitStderr("serving http://")
		url := line[strings.Index(line, "http://"):]
		statusURLs[i] = url[:strings.Index(url, "/metrics")] + "/status?format=json"
	}
	for _, u := range statusURLs {
		if got := readStatus(t, u); got.State != "registered" {
			t.Fatalf("%s before the restart: %+v; want registered", u, got)
		}
	}

	stopped := time.Now()
	dev.interrupt()
	// As a person does, start dev again only once the register processes
	// have noticed it is gone.
	for i, u := range statusURLs {
		waitUntil(t, fmt.Sprintf("p-%d to see the registry disconnected", i+1), func() bool {
			b := readReport(t, u).Backend
			return b != nil && !b.Connected
		})
	}
	dev = startRoster(t, nil, "dev", "--backend", backend, "--port", port)
	dev.waitLine(servingLine + port)
	serving := time.Now()

	// Wait, generously for a loaded machine, for every registration to be
	// registered again since dev stopped, then check when that was (the
	// register process's own clock, not this test's polling).
	deadline := time.Now().Add(waitTimeout)
	for i, u := range statusURLs {
		for {
			got := readStatus(t, u)
			if got.State == "registered" && got.Since.After(stopped) {
				if late := got.Since.Sub(serving); late > recoverWithin {
					t.Errorf("p-%d registered again %v after dev's restart; want within %v", i+1, late.Round(time.Millisecond), recoverWithin)
				} else {
					t.Logf("p-%d registered again %v after dev's restart", i+1, late.Round(time.Millisecond))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("p-%d %v after dev's restart: %s since %s (cause %q); want registered again",
					i+1, waitTimeout, got.State, got.Since.Format(time.RFC3339Nano), got.Cause)
			}
			time.Sleep(20 * time.Millisecond) // polling /status, as a probe does
		}
	}
}

// readStatus GETs a register process's /status as JSON and returns its one
// registration.
func readStatus(t *testing.T, url string) statushttp.Registration {
	t.Helper()
	rep := readReport(t, url)
	if len(rep.Registrations) != 1 {
		t.Fatalf("GET %s: %d registrations; want 1", url, len(rep.Registrations))
	}
	return rep.Registrations[0]
}

// readReport GETs a register process's /status as JSON.
func readReport(t *testing.T, url string) statushttp.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var rep statushttp.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return rep
}

// waitStderr waits for a stderr line containing want and returns it.
func (p *proc) waitStderr(want string) string {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		p.mu.Lock()
		for _, line := range p.stderr {
			if strings.Contains(line, want) {
				p.mu.Unlock()
				return line
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no stderr line with %q within %v", p.name, want, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling the captured output
	}
}

// waitUntil polls cond until it holds, failing the test after waitTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling /status, as a probe does
	}
}
