package webui_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roster-sd/roster/internal/webui"
)

// TestPageAndHeaders: the page and its assets come from the binary with a
// strict Content-Security-Policy; the view is read-only and answers only
// requests that name an IP address, localhost or an allowed host (DNS
// rebinding).
func TestPageAndHeaders(t *testing.T) {
	f := newFixture(t, nil, webui.WithAllowedHosts("roster.example"))
	cases := []struct {
		name, method, path, host string
		status                   int
		contentType, body        string
	}{
		{"page", "GET", "/", "", 200, "text/html", `<script src="app.js" defer></script>`},
		{"script", "GET", "/app.js", "", 200, "text/javascript", "textContent"},
		{"style", "GET", "/style.css", "", 200, "text/css", "prefers-color-scheme"},
		{"icon", "GET", "/favicon.svg", "", 200, "image/svg+xml", "<svg"},
		{"head", "HEAD", "/", "", 200, "text/html", ""},
		{"unknown path", "GET", "/etc/passwd", "", 404, "", ""},
		{"assets directory", "GET", "/assets/", "", 404, "", ""},
		{"post", "POST", "/", "", 405, "", "read-only"},
		{"delete", "DELETE", "/events", "", 405, "", "read-only"},
		{"localhost", "GET", "/", "localhost:8500", 200, "text/html", ""},
		{"ipv6 loopback", "GET", "/", "[::1]:8500", 200, "text/html", ""},
		{"ip address", "GET", "/", "10.1.2.3:8500", 200, "text/html", ""},
		{"rebinding", "GET", "/", "attacker.example:8500", 403, "", "Host header"},
		{"rebinding events", "GET", "/events", "attacker.example", 403, "", "Host header"},
		{"allowed name", "GET", "/", "roster.example:8500", 200, "text/html", ""},
		{"allowed name, final dot", "GET", "/", "ROSTER.example.", 200, "text/html", ""},
		{"allowed name's subdomain", "GET", "/", "x.roster.example", 403, "", "Host header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, f.srv.URL+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.host != "" {
				req.Host = c.host
			}
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.contentType) {
				t.Errorf("Content-Type %q, want %q", ct, c.contentType)
			}
			if !strings.Contains(string(body), c.body) {
				t.Errorf("body does not hold %q:\n%s", c.body, body)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("Content-Security-Policy %q allows inline script or eval", csp)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
		})
	}
}

// TestAssetsBuildNoMarkupFromData: the script never parses data as markup.
func TestAssetsBuildNoMarkupFromData(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := f.srv.Client().Get(f.srv.URL + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	js, _ := io.ReadAll(resp.Body)
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	page, err := f.srv.Client().Get(f.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer page.Body.Close()
	html, _ := io.ReadAll(page.Body)
	for _, bad := range []string{"http://", "https://", "<style", "style=", "onload=", "onclick="} {
		if strings.Contains(string(html), bad) {
			t.Errorf("index.html holds %q: no other origin, no inline style or script", bad)
		}
	}
}

// TestHostCheckedOnEveryAddress: a request that reaches the view on an
// address other than loopback (roster ui --listen 0.0.0.0:8500) and names
// a host that is neither an IP address nor allowed is refused too: DNS
// rebinding works there as well. (Before, only loopback was checked.)
func TestHostCheckedOnEveryAddress(t *testing.T) {
	f := newFixture(t, nil, webui.WithAllowedHosts("roster.example"))
	local := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 8500}
	cases := []struct {
		host string
		want int
	}{
		{"192.0.2.2:8500", http.StatusOK},
		{"roster.example:8500", http.StatusOK},
		{"attacker.example:8500", http.StatusForbidden},
	}
	for _, c := range cases {
		req := httptest.NewRequestWithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, local), http.MethodGet, "/", nil)
		req.Host = c.host
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("Host %q on %v: %d, want %d", c.host, local, rec.Code, c.want)
		}
	}
}
