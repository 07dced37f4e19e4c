package statushttp

import (
	"fmt"
	"net/http"

	"github.com/roster-sd/roster/internal/hostcheck"
)

// GuardHosts returns next answering only requests whose Host header names
// an IP address, localhost (or a name under .localhost), or one of hosts
// (names without a port, compared without case); any other gets 403
// Forbidden. Serve the status (and metrics) through it when they listen
// on an address a browser can reach: a web page can make any name resolve
// to that address (DNS rebinding) and read what is served, but the
// browser still sends the name it used. An invalid name is an error
// wrapping hostcheck's ErrInvalidName that quotes it.
func GuardHosts(next http.Handler, hosts ...string) (http.Handler, error) {
	for _, h := range hosts {
		if err := hostcheck.ValidName(h); err != nil {
			return nil, fmt.Errorf("statushttp: allowed host: %w", err)
		}
	}
	return hostcheck.Handler(next, hosts), nil
}
