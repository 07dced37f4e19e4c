package configcheck_test

import (
	"strings"
	"testing"

	"github.com/roster-sd/roster/internal/configcheck"
)

// NATSEndpoint's error never quotes what follows "://": a password may
// hold '/', '?', '#' or ':', which end the URL's user information early
// and leave a piece of it where url.Parse looks for a host or a port.
func TestNATSEndpointNeverQuotesCredentials(t *testing.T) {
	t.Parallel()
	cases := []struct{ ep, secret string }{
		{"nats://roster:Zq3/et@127.0.0.1:4222", "Zq3"},
		{"nats://roster:Zq3/ss:wd@127.0.0.1:4222", "Zq3"},
		{"nats://roster:Zq3?cret@127.0.0.1:4222", "Zq3"},
		{"nats://roster:Zq3#cret@127.0.0.1:4222", "Zq3"},
		{"nats://roster:Zq3%zzret@127.0.0.1:4222", "Zq3"},
		{"nats://Zq3/en@127.0.0.1:4222", "Zq3"},
		{"tls://roster:Zq3:w:d@[::1:4222", "Zq3"},
		{"nats://roster:Zq3@127.0.0.1:notaport", "Zq3"},
	}
	for _, tc := range cases {
		err := configcheck.NATSEndpoint(tc.ep)
		if err == nil {
			t.Errorf("NATSEndpoint(%q) = nil; want an error", tc.ep)
			continue
		}
		if _, rest, _ := strings.Cut(tc.ep, "://"); strings.Contains(err.Error(), tc.secret) || strings.Contains(err.Error(), rest) {
			t.Errorf("NATSEndpoint(%q) = %q; want an error quoting nothing after ://", tc.ep, err)
		}
	}
}
