// Package envconfig reads the ROSTER_* environment variables that every
// networked backend shares (package backends names them), so that each
// backend's ConfigFromEnv parses them the same way and reads only its own
// variables itself. Its errors name the variable and the reason; a backend
// wraps them with its own ErrInvalidConfig. A password's value never
// appears in an error.
package envconfig

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/roster-sd/roster/backends"
)

// Common holds the shared variables' values; an unset or empty variable
// leaves its field zero.
type Common struct {
	// Endpoints is backends.EnvEndpoints, split at commas.
	Endpoints []string
	// TTL is backends.EnvTTL.
	TTL time.Duration
	// Timeout is backends.EnvTimeout.
	Timeout time.Duration
	// CACertFile, CertFile and KeyFile are backends.EnvCACert, EnvCert
	// and EnvKey.
	CACertFile, CertFile, KeyFile string
	// Username and Password are backends.EnvUsername and EnvPassword.
	Username, Password string
}

// Reader reads variables through a lookup function such as os.LookupEnv.
type Reader struct {
	lookup func(string) (string, bool)
}

// NewReader returns a Reader on lookup.
func NewReader(lookup func(string) (string, bool)) Reader { return Reader{lookup: lookup} }

// String returns the variable's value without surrounding spaces, or "".
func (r Reader) String(name string) string {
	v, _ := r.lookup(name)
	return strings.TrimSpace(v)
}

// Raw returns the variable's value as it is (a password may have spaces).
func (r Reader) Raw(name string) string {
	v, _ := r.lookup(name)
	return v
}

// Duration returns the variable as a positive Go duration, or 0 when it is
// unset or empty.
func (r Reader) Duration(name string) (time.Duration, error) {
	v := r.String(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s is %q; want a Go duration such as 15s or 1m", name, v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s is %v; want a positive duration", name, d)
	}
	return d, nil
}

// List returns the variable split at commas, each element (an "endpoint",
// say: noun) checked by check, whose error says what is wrong without
// naming the variable or quoting the element; or nil when the variable is
// unset or empty. want says what the variable should hold. Its errors
// quote the value through Redact.
func (r Reader) List(name, noun, want string, check func(string) error) ([]string, error) {
	v := r.String(name)
	if v == "" {
		return nil, nil
	}
	var out []string
	for i, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("%s %q has an empty %s at position %d; want %s", name, Redact(v), noun, i+1, want)
		}
		if err := check(e); err != nil {
			return nil, fmt.Errorf("%s %s %s: %w", name, noun, QuoteElement(v, e, i+1), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// ReadCommon reads the shared variables. checkEndpoint judges one endpoint
// for the backend, wantEndpoints says what the backend takes (for errors); checkTTL judges a non-zero TTL. Pairs that do not hold
// together (a certificate without its key, a password without a user) are
// errors.
func ReadCommon(lookup func(string) (string, bool), wantEndpoints string, checkEndpoint func(string) error, checkTTL func(time.Duration) error) (Common, error) {
	r := NewReader(lookup)
	var c Common
	var err error
	if c.Endpoints, err = r.List(backends.EnvEndpoints, "endpoint", wantEndpoints, checkEndpoint); err != nil {
		return Common{}, err
	}
	if c.TTL, err = r.Duration(backends.EnvTTL); err != nil {
		return Common{}, err
	}
	if c.TTL != 0 {
		if err := checkTTL(c.TTL); err != nil {
			return Common{}, fmt.Errorf("%s is %v; %w", backends.EnvTTL, c.TTL, err)
		}
	}
	if c.Timeout, err = r.Duration(backends.EnvTimeout); err != nil {
		return Common{}, err
	}
	c.CACertFile, c.CertFile, c.KeyFile = r.String(backends.EnvCACert), r.String(backends.EnvCert), r.String(backends.EnvKey)
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		return Common{}, fmt.Errorf("%s is empty but %s is set: a client certificate needs its key", backends.EnvKey, backends.EnvCert)
	case c.CertFile == "" && c.KeyFile != "":
		return Common{}, fmt.Errorf("%s is empty but %s is set: a key needs its client certificate", backends.EnvCert, backends.EnvKey)
	}
	c.Username = r.String(backends.EnvUsername)
	if p := r.Raw(backends.EnvPassword); p != "" {
		c.Password = p
	}
	if c.Password != "" && c.Username == "" {
		return Common{}, fmt.Errorf("%s is empty but %s is set", backends.EnvUsername, backends.EnvPassword)
	}
	return c, nil
}

// Redact returns s, an endpoint or a comma-separated list of them, with
// everything from its first "://" (or its start) to its last '@' replaced
// by "redacted": the user information before a host (user:password@ or
// token@, as in nats://user:password@host:4222) is gone, even when a
// password holds a comma, '/', '?', '#', '@' or "://" (a "://" counts only
// after a scheme: see IsScheme). A list with
// credentials in it keeps only the scheme of its first endpoint and what
// follows the last '@'. The result can be quoted in an error or a log line.
func Redact(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if j := strings.Index(s, "://"); j >= 0 && j < at && IsScheme(s[:j]) {
		start = j + len("://")
	}
	return s[:start] + "redacted" + s[at:]
}

// IsScheme reports whether s is a URL scheme as RFC 3986 writes one: a
// letter, then letters, digits, '+', '-' or '.'. What comes before a
// "://" that is not one may be a piece of a password, and is not quoted.
func IsScheme(s string) bool {
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// QuoteElement returns how an error may quote elem, element pos (from 1)
// of list, a comma-separated list of endpoints: elem quoted; but when the
// list holds a '@' (credentials), an element may be a piece of a URL
// whose password holds a comma, so the whole list is quoted through
// Redact, with elem's position.
func QuoteElement(list, elem string, pos int) string {
	switch {
	case !strings.Contains(list, "@"):
		return strconv.Quote(elem)
	case !strings.Contains(list, ","):
		return strconv.Quote(Redact(list))
	}
	return fmt.Sprintf("#%d of %q (the list is split at commas: write a comma in a password as %%2C)", pos, Redact(list))
}
