// Package configcheck judges the values of the backends' settings that
// come from outside (a variable, a flag), once for the backend that reads
// them (its ConfigFromEnv and New) and for the roster command line, which
// names the flag in its errors. Each check says why a value is refused,
// without naming where it came from, and never quotes a URL (it may hold
// a password). It is internal: the backends' exported surface is their
// Config and ConfigFromEnv.
package configcheck

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/roster-sd/roster/internal/envconfig"
)

// EtcdDefaultPrefix is the etcd backend's default key prefix
// (etcd.DefaultPrefix), named in the prefix check's advice.
const EtcdDefaultPrefix = "/roster/services"

// NATSMinTTL is the NATS backend's smallest TTL (nats.MinTTL):
// nats-server counts message TTLs in seconds.
const NATSMinTTL = time.Second

// EtcdScheme returns the scheme of an etcd endpoint, lower case, as the
// etcd client reads it: "unix" and "unixs" for "unix:path" and
// "unixs:path" too, "" for a bare host:port.
func EtcdScheme(ep string) string {
	ep = strings.TrimSpace(ep)
	switch {
	case strings.HasPrefix(ep, "unixs:"):
		return "unixs"
	case strings.HasPrefix(ep, "unix:"):
		return "unix"
	}
	scheme, _, ok := strings.Cut(ep, "://")
	if !ok {
		return ""
	}
	return strings.ToLower(scheme)
}

// EtcdEndpoint reports whether ep is an endpoint the etcd backend
// accepts: host:port, or an http, https, unix or unixs URL.
func EtcdEndpoint(ep string) error {
	if strings.TrimSpace(ep) == "" {
		return errors.New("empty")
	}
	switch EtcdScheme(ep) {
	case "unix", "unixs":
		return nil
	case "":
		if strings.Contains(ep, "://") {
			return errors.New("want host:port or a URL")
		}
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" || port == "" {
			return errors.New("want host:port or an http, https, unix or unixs URL")
		}
		return nil
	case "http", "https":
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			// url.Error's text quotes the URL, credentials and all.
			return errors.New("not a valid URL")
		case u.User != nil:
			return errors.New("has credentials in it, which etcd does not use: give them as Username and Password")
		case u.Host == "":
			return errors.New("URL has no host")
		}
		return nil
	default:
		if !envconfig.IsScheme(EtcdScheme(ep)) {
			// Perhaps a piece of a password: not quoted.
			return errors.New("want host:port or a URL")
		}
		return errors.New("scheme " + EtcdScheme(ep) + "://; want http, https, unix or unixs")
	}
}

// EtcdTTL reports whether a non-zero d is a TTL the etcd backend accepts:
// whole seconds, at least 1s.
func EtcdTTL(d time.Duration) error {
	switch {
	case d < time.Second:
		return errors.New("want at least 1s")
	case d%time.Second != 0:
		return errors.New("want a whole number of seconds (etcd counts lease TTLs in seconds)")
	}
	return nil
}

// EtcdPrefix reports whether p is a key prefix the etcd backend accepts:
// an absolute path of one or more segments of printable, non-space ASCII,
// none of them "." or "..", without a trailing slash, so that
// <Prefix>/<service>/<id> never leaves the prefix.
func EtcdPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("must start with '/' (an absolute key prefix such as " + EtcdDefaultPrefix + ")")
	}
	if strings.HasSuffix(p, "/") {
		return errors.New("must not end with '/'")
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] >= 0x7f {
			return errors.New("has a byte that is not printable ASCII or is a space; want printable ASCII without spaces")
		}
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return errors.New("has an empty segment")
		case ".", "..":
			return errors.New("has a \"" + seg + "\" segment")
		}
	}
	return nil
}

// natsEncodeHint ends NATSEndpoint's errors about a URL's shape.
const natsEncodeHint = " (in a user name, password or token, write '/', '?', '#', '%', '@' and ':' percent-encoded)"

// NATSEndpoint reports whether ep is an endpoint the NATS backend
// accepts: host:port, or a nats, tls, ws or wss URL with a host. It never
// quotes ep.
func NATSEndpoint(ep string) error {
	if strings.TrimSpace(ep) == "" {
		return errors.New("empty")
	}
	scheme, _, hasScheme := strings.Cut(ep, "://")
	if !hasScheme {
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" || port == "" {
			return errors.New("want host:port or a nats:// or tls:// URL")
		}
		return nil
	}
	switch scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %s://; want nats, tls, ws or wss", scheme)
	}
	// Nothing after "://" is ever quoted: url.Parse's errors quote the
	// URL or a piece of it (a port), which may be part of a password.
	u, err := url.Parse(ep)
	if err != nil {
		return errors.New("not a valid URL" + natsEncodeHint)
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		// NATS URLs have none: a '/', '?' or '#' meant to be in the
		// credentials ended them early.
		return errors.New("URL has a path, query or fragment, which NATS URLs never have" + natsEncodeHint)
	}
	return nil
}

// NATSTTL reports whether a non-zero d is a TTL the NATS backend accepts:
// whole seconds, at least NATSMinTTL.
func NATSTTL(d time.Duration) error {
	switch {
	case d < NATSMinTTL:
		return fmt.Errorf("want at least %v", NATSMinTTL)
	case d%time.Second != 0:
		return errors.New("want a whole number of seconds (NATS counts message TTLs in seconds)")
	}
	return nil
}

// NATSBucket reports whether name is a bucket name the NATS backend
// accepts: letters, digits, '-' and '_'.
func NATSBucket(name string) error {
	if name == "" {
		return errors.New("want letters, digits, '-' and '_' only")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return errors.New("want letters, digits, '-' and '_' only")
		}
	}
	return nil
}
