package statushttp_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/internal/hostcheck"
	"github.com/roster-sd/roster/statushttp"
)

// TestGuardHosts: the status behind GuardHosts answers requests naming an
// IP address, localhost or an allowed name, and refuses any other name
// (DNS rebinding); an invalid allowed name is an error.
func TestGuardHosts(t *testing.T) {
	b, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h, err := statushttp.GuardHosts(statushttp.New(b), "status.example")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	// Answered: 503, as nothing is registered.
	cases := []struct {
		host string
		want int
	}{
		{"", http.StatusServiceUnavailable}, // the server's IP address and port
		{"localhost:9090", http.StatusServiceUnavailable},
		{"[::1]:9090", http.StatusServiceUnavailable},
		{"10.0.0.7:9090", http.StatusServiceUnavailable},
		{"status.example:9090", http.StatusServiceUnavailable},
		{"attacker.example:9090", http.StatusForbidden},
		{"status.example.attacker.example", http.StatusForbidden},
	}
	for _, c := range cases {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Host %q: %d, want %d", c.host, resp.StatusCode, c.want)
		}
	}
	if _, err := statushttp.GuardHosts(statushttp.New(b), "status.example:9090"); !errors.Is(err, hostcheck.ErrInvalidName) {
		t.Errorf("a name with a port: %v, want ErrInvalidName", err)
	}
}
