package statushttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/retry"
	"github.com/roster-sd/roster/statushttp"
)

const waitFor = 10 * time.Second

// answer is one HTTP answer.
type answer struct {
	code        int
	contentType string
	body        string
}

// get requests url with an Accept header (none if empty).
func get(t *testing.T, method, url, accept string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Close = true // leave no idle connection for goleak
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(body)}
}

// serve serves h until the test ends and returns its URL.
func serve(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// wantJSON checks that url answers code and exactly the JSON document
// want (compared after compacting both).
func wantJSON(t *testing.T, url string, code int, want string) {
	t.Helper()
	got := get(t, http.MethodGet, url+"?format=json", "")
	if got.code != code || got.contentType != "application/json" {
		t.Errorf("answer %d %s, want %d application/json", got.code, got.contentType, code)
	}
	var g, w bytes.Buffer
	if err := json.Compact(&g, []byte(got.body)); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, got.body)
	}
	if err := json.Compact(&w, []byte(want)); err != nil {
		t.Fatalf("bad test JSON: %v\n%s", err, want)
	}
	if g.String() != w.String() {
		t.Errorf("JSON =\n%s\nwant\n%s", g.String(), w.String())
	}
}

// since returns the Since of a registration, as the JSON writes it.
func since(t *testing.T, b discovery.StatusReporter, service, id string) string {
	t.Helper()
	st, err := b.Status(service, id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Since.Format(time.RFC3339Nano)
}

func TestHandlerMemoryStates(t *testing.T) {
	t.Parallel()
	store := memory.NewStore()
	// Hour-long delays: every state stays put until the test moves it.
	slow := retry.Policy{Base: time.Hour, Max: time.Hour}
	b, err := memory.New(store, memory.WithRetry(slow), memory.WithRestoreDelay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := serve(t, statushttp.New(b))

	// Before Register: not ready.
	wantJSON(t, url, 503, `{"ready":false,"reason":"no registration: not registered yet, or deregistered",
		"registrations":[],"backend":{"connected":true,"retry_attempts":0}}`)

	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Metadata: map[string]string{"zone": "a"}}
	if err := b.Register(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	wantJSON(t, url, 200, `{"ready":true,"reason":"every registration is registered","registrations":[
		{"service":"payments","id":"p-1","address":"10.0.0.7:8080","metadata":{"zone":"a"},"state":"registered",
		 "since":"`+since(t, b, "payments", "p-1")+`","was_registered":true}],
		"backend":{"connected":true,"retry_attempts":0}}`)

	// A registry outage: retrying, and still ready.
	store.SetAvailable(false)
	st, err := b.Status("payments", "p-1")
	if err != nil || st.State != discovery.StateRetrying {
		t.Fatalf("status = %v, %v; want retrying", st, err)
	}
	wantJSON(t, url, 200, `{"ready":true,
		"reason":"every registration has been registered; 1 of 1 not registered now, which does not make the process unready",
		"registrations":[
		{"service":"payments","id":"p-1","address":"10.0.0.7:8080","metadata":{"zone":"a"},"state":"retrying",
		 "since":"`+st.Since.Format(time.RFC3339Nano)+`","was_registered":true,
		 "attempt":1,"retry_in_seconds":3600,"next_retry":"`+st.Since.Add(time.Hour).Format(time.RFC3339Nano)+`",
		 "cause":"memory: keep registrations published: memory: discovery: registry unavailable"}],
		"backend":{"connected":false,"retry_attempts":1}}`)
	store.SetAvailable(true)
	testwait.Until(t, waitFor, "registered again", func() bool {
		st, err := b.Status("payments", "p-1")
		return err == nil && st.State == discovery.StateRegistered
	})

	// A conflict: another backend took the key; still ready.
	other, err := memory.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Register(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	wantJSON(t, url, 200, `{"ready":true,
		"reason":"every registration has been registered; 1 of 1 not registered now, which does not make the process unready",
		"registrations":[
		{"service":"payments","id":"p-1","address":"10.0.0.7:8080","metadata":{"zone":"a"},"state":"conflict",
		 "since":"`+since(t, b, "payments", "p-1")+`","was_registered":true,
		 "cause":"memory: payments/p-1 written by another backend: discovery: instance owned by another registrar"}],
		"backend":{"connected":true,"retry_attempts":1}}`)
	other.Close() // hands the key back
	testwait.Until(t, waitFor, "registered again", func() bool {
		st, err := b.Status("payments", "p-1")
		return err == nil && st.State == discovery.StateRegistered
	})

	// Lost (an expiry, restored an hour later): still ready.
	store.Expire("payments", "p-1")
	wantJSON(t, url, 200, `{"ready":true,
		"reason":"every registration has been registered; 1 of 1 not registered now, which does not make the process unready",
		"registrations":[
		{"service":"payments","id":"p-1","address":"10.0.0.7:8080","metadata":{"zone":"a"},"state":"lost",
		 "since":"`+since(t, b, "payments", "p-1")+`","was_registered":true,
		 "cause":"memory: payments/p-1 dropped from the store: memory: registration expired"}],
		"backend":{"connected":true,"retry_attempts":1}}`)

	// Deregistered: not ready.
	if err := b.Deregister(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	wantJSON(t, url, 503, `{"ready":false,"reason":"no registration: not registered yet, or deregistered",
		"registrations":[],"backend":{"connected":true,"retry_attempts":1}}`)
	// Registered again, then closed: not ready.
	if err := b.Register(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if got := get(t, http.MethodGet, url, ""); got.code != 200 {
		t.Errorf("registered again: %d, want 200", got.code)
	}
	b.Close()
	if got := get(t, http.MethodGet, url, ""); got.code != 503 {
		t.Errorf("after Close: %d, want 503", got.code)
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	st := func(state discovery.State, was bool) discovery.Status {
		return discovery.Status{Instance: discovery.Instance{Service: "payments", ID: fmt.Sprint("p-", state)}, State: state, WasRegistered: was}
	}
	cases := []struct {
		name     string
		statuses []discovery.Status
		want     bool
	}{
		{"none", nil, false},
		{"registering", []discovery.Status{st(discovery.StateRegistering, false)}, false},
		{"retrying before the first registration", []discovery.Status{st(discovery.StateRetrying, false)}, false},
		{"conflict before the first registration", []discovery.Status{st(discovery.StateConflict, false)}, false},
		{"registered", []discovery.Status{st(discovery.StateRegistered, true)}, true},
		{"registered, from a backend that does not set WasRegistered", []discovery.Status{st(discovery.StateRegistered, false)}, true},
		{"retrying after", []discovery.Status{st(discovery.StateRetrying, true)}, true},
		{"lost after", []discovery.Status{st(discovery.StateLost, true)}, true},
		{"conflict after", []discovery.Status{st(discovery.StateConflict, true)}, true},
		{"one of two never", []discovery.Status{st(discovery.StateRegistered, true), st(discovery.StateRetrying, false)}, false},
	}
	for _, c := range cases {
		if got, reason := statushttp.Ready(c.statuses); got != c.want {
			t.Errorf("%s: Ready = %v (%s), want %v", c.name, got, reason, c.want)
		}
	}
}

func TestHandlerFormats(t *testing.T) {
	t.Parallel()
	b, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Metadata comes from the application, or from other processes: a
	// page must escape it.
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080",
		Metadata: map[string]string{"note": `<script>alert("x")</script>`}}
	if err := b.Register(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	url := serve(t, statushttp.New(b))
	since := since(t, b, "payments", "p-1")

	html := get(t, http.MethodGet, url, "text/html,application/xhtml+xml")
	if html.code != 200 || html.contentType != "text/html; charset=utf-8" {
		t.Errorf("HTML answer %d %s", html.code, html.contentType)
	}
	if strings.Contains(html.body, "<script>") || !strings.Contains(html.body, "&lt;script&gt;") {
		t.Errorf("HTML page does not escape metadata:\n%s", html.body)
	}
	for _, s := range []string{"<h1>Ready</h1>", "<td>payments</td><td>p-1</td><td>10.0.0.7:8080</td>", "registered since " + since} {
		if !strings.Contains(html.body, s) {
			t.Errorf("HTML page lacks %q:\n%s", s, html.body)
		}
	}

	text := get(t, http.MethodGet, url, "")
	wantText := "ready: every registration is registered\n" +
		"payments/p-1 at 10.0.0.7:8080: registered since " + since + "\n" +
		"backend: connected, 0 retry attempts\n"
	if text.code != 200 || text.contentType != "text/plain; charset=utf-8" || text.body != wantText {
		t.Errorf("text answer %d %s:\n%s\nwant:\n%s", text.code, text.contentType, text.body, wantText)
	}
	for accept, want := range map[string]string{
		"application/json":                          "application/json",
		"application/json;q=0, text/html":           "text/html; charset=utf-8",
		"application/json;q=0":                      "text/plain; charset=utf-8",
		"text/html;q=0.5, application/json":         "application/json",
		"text/html,application/xhtml+xml,*/*;q=0.8": "text/html; charset=utf-8",
		"*/*": "text/plain; charset=utf-8",
	} {
		if got := get(t, http.MethodGet, url, accept); got.contentType != want {
			t.Errorf("Accept: %s gives %s; want %s", accept, got.contentType, want)
		}
	}
	if got := get(t, http.MethodGet, url+"?format=text", "text/html"); got.body != wantText {
		t.Errorf("?format=text with Accept: text/html gives\n%s", got.body)
	}
	if got := get(t, http.MethodHead, url, ""); got.code != 200 || got.body != "" {
		t.Errorf("HEAD gives %d %q; want 200 and no body", got.code, got.body)
	}
	if got := get(t, http.MethodPost, url, ""); got.code != http.StatusMethodNotAllowed {
		t.Errorf("POST gives %d, want 405", got.code)
	}
	if got := get(t, http.MethodGet, url+"?format=xml", ""); got.code != http.StatusBadRequest {
		t.Errorf("?format=xml gives %d, want 400", got.code)
	}
}

// TestRetryingSaysWhenTheAttemptFailed: every failed attempt is a new
// status whose Since is when that attempt failed (backendkit.StatusBoard,
// as every backend reports it), not when the registration began retrying;
// the text and HTML answers say so rather than "retrying since".
func TestRetryingSaysWhenTheAttemptFailed(t *testing.T) {
	t.Parallel()
	board := backendkit.NewStatusBoard()
	defer board.Close()
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	began := time.Date(2026, 11, 29, 8, 50, 0, 0, time.UTC)
	cause := errors.New("no connection to etcd")
	board.Set(discovery.Status{Instance: in, State: discovery.StateRegistered, Since: began.Add(-time.Minute)})
	board.Set(discovery.Status{Instance: in, State: discovery.StateRetrying, Attempt: 1, RetryIn: 2 * time.Second, Err: cause, Since: began})
	board.Set(discovery.Status{Instance: in, State: discovery.StateRetrying, Attempt: 2, RetryIn: 4 * time.Second, Err: cause, Since: began.Add(2 * time.Second)})
	url := serve(t, statushttp.New(board))

	want := "payments/p-1 at 10.0.0.7:8080: retrying (attempt 2 failed at 2026-11-29T08:50:02Z, next at 2026-11-29T08:50:06Z): no connection to etcd\n"
	if got := get(t, http.MethodGet, url, ""); got.code != 200 || !strings.Contains(got.body, want) || strings.Contains(got.body, "retrying since") {
		t.Errorf("text answer %d:\n%s\nwant it to hold:\n%s", got.code, got.body, want)
	}
	if got := get(t, http.MethodGet, url, "text/html"); !strings.Contains(got.body, "<td>retrying (attempt 2 failed at 2026-11-29T08:50:02Z, next at 2026-11-29T08:50:06Z)</td>") {
		t.Errorf("HTML answer:\n%s", got.body)
	}
}
