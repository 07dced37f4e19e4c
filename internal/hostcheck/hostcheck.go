// Package hostcheck guards roster's HTTP servers (the web view, the
// status endpoint of roster register --http) against DNS rebinding: a web
// page in a user's browser can make any name resolve to the server's
// address and then read it as its own origin, but the browser still sends
// that name in the Host header. A request is answered only when its Host
// names an IP address, localhost, or a host the server was told it is
// reached by.
package hostcheck

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Reason says why Allowed refused a request, for a 403 response.
const Reason = "the Host header must name an IP address, localhost, or a host this server was told it is reached by"

// ErrInvalidName reports a host name that cannot be allowed.
var ErrInvalidName = errors.New("hostcheck: invalid host name")

// Allowed reports whether r names a host it may be answered for: an IP
// address (a rebinding page's origin is a name, never the server's own
// address), localhost or a name under .localhost (browsers resolve them
// to loopback themselves), or one of allowed (compared without case).
func Allowed(r *http.Request, allowed []string) bool {
	host := Host(r.Host)
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSuffix(a, "."), host) {
			return true
		}
	}
	return false
}

// Host returns the host of a Host header, without its port, brackets or
// final dot, in lower case.
func Host(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// ValidName checks that name can be given to Allowed: a DNS name (letters,
// digits, '-', '_' and '.', at most 253 bytes) without a port. An error
// wraps ErrInvalidName and says why.
func ValidName(name string) error {
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > 253 {
		return fmt.Errorf("%w: %q: want a DNS name of 1 to 253 bytes", ErrInvalidName, name)
	}
	for _, c := range n {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("%w: %q: %q is not allowed in a host name (give the name alone, without a port)", ErrInvalidName, name, c)
		}
	}
	return nil
}

// Handler returns h guarded by Allowed: a request naming another host
// gets 403 Forbidden.
func Handler(h http.Handler, allowed []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Allowed(r, allowed) {
			http.Error(w, "forbidden: "+Reason, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
