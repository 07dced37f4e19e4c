package hostcheck_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/roster-sd/roster/internal/hostcheck"
)

// TestAllowed: IP addresses, localhost names and allowed names pass;
// other names, and no Host at all, do not.
func TestAllowed(t *testing.T) {
	t.Parallel()
	allowed := []string{"roster.example", "Status.Example."}
	cases := []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8500", true},
		{"[::1]:8500", true},
		{"10.0.0.7", true},
		{"localhost:8500", true},
		{"app.localhost", true},
		{"roster.example:8500", true},
		{"ROSTER.EXAMPLE.", true},
		{"status.example", true},
		{"", false},
		{"attacker.example:8500", false},
		{"roster.example.attacker.example", false},
		{"localhost.attacker.example", false},
	}
	for _, c := range cases {
		r := &http.Request{Host: c.host}
		if got := hostcheck.Allowed(r, allowed); got != c.want {
			t.Errorf("Host %q: %v, want %v", c.host, got, c.want)
		}
	}
}

// TestValidName: a name with a port, a scheme, a space or nothing is an
// error wrapping ErrInvalidName.
func TestValidName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"roster.example", "a", "x_y-z.example."} {
		if err := hostcheck.ValidName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "roster.example:8500", "http://roster.example", "a b", "*.example"} {
		if err := hostcheck.ValidName(bad); !errors.Is(err, hostcheck.ErrInvalidName) {
			t.Errorf("%q: %v, want ErrInvalidName", bad, err)
		}
	}
}
