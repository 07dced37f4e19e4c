package statushttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/statushttp"
)

// TestContentNegotiation: the format follows RFC 9110's Accept rules.
// Every format (text/plain, text/html, application/json) competes at the
// quality of the most specific media range that matches it (type/subtype
// over type/* over */*); q is a number from 0 to 1 with at most three
// decimals, and a range with any other q is ignored; q=0 refuses. The
// highest q wins; on a tie the explicitly named type, then the earlier
// range, then plain text, HTML, JSON in that order. With no acceptable
// format the answer is plain text.
func TestContentNegotiation(t *testing.T) {
	t.Parallel()
	b, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	h := statushttp.New(b)
	const (
		text = "text/plain; charset=utf-8"
		html = "text/html; charset=utf-8"
		json = "application/json"
	)
	cases := []struct {
		accept string
		want   string
	}{
		{"", text},
		{"*/*", text},
		{"text/*", text},
		{"application/json", json},
		{"text/html", html},
		{"text/plain", text},
		{"text/plain, application/json", text},
		{"application/json, text/html", json},
		{"text/plain;q=0.9, text/html;q=0.5", text},
		{"text/plain;q=0.5, text/html;q=0.9", html},
		{"text/plain;q=0.5, application/json;q=0.6", json},
		{"text/html;q=0.5, application/json", json},
		{"application/json;q=0, text/html", html},
		{"application/json;q=0", text},
		{"text/html,application/xhtml+xml,*/*;q=0.8", html},
		{"application/json;q=0.5, */*", text},
		{"application/json;q=0.5, text/*", text},
		{"text/*;q=0.4, application/json;q=0.5", json},
		{"text/*;q=0.6, application/json;q=0.5", text},
		{"text/*;q=0, */*", json},
		{"text/plain;q=0, text/*", html},
		{"*/*;q=0.1, application/json;q=0.05", text},
		{"*/*;q=0.1, text/plain;q=0", html},
		{"TEXT/HTML", html},
		{"text/html;level=1;q=0.7, application/json;q=0.6", html},
		// q above 1, or not a qvalue at all, is no preference.
		{"application/json;q=2, text/html", html},
		{"application/json;q=1.5, text/html;q=0.9", html},
		{"application/json;q=Inf, text/html;q=0.9", html},
		{"application/json;q=NaN, text/html;q=0.1", html},
		{"application/json;q=-1, text/html;q=0.1", html},
		{"application/json;q=0.0001, text/html;q=0.1", html},
		{"application/json;q=1e0, text/html;q=0.1", html},
		{"application/json;q=1.000, text/html;q=0.999", json},
		{"application/json;q=2", text},
		{"garbage, application/json", json},
	}
	for _, c := range cases {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := rec.Header().Get("Content-Type"); got != c.want {
			t.Errorf("Accept: %q gives %s; want %s", c.accept, got, c.want)
		}
	}
}
