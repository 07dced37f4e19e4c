package discovery

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits enforced by Instance.Validate.
const (
	// MaxNameLen is the longest Service or ID, in bytes.
	MaxNameLen = 128
	// MaxHostLen is the longest host part of an Address, in bytes.
	MaxHostLen = 253
	// MaxEncodedLen is the largest JSON encoding of an Instance, in bytes.
	MaxEncodedLen = 64 << 10

	// maxAddressLen is the longest Address: the longest host in brackets,
	// a colon and a five-digit port.
	maxAddressLen = MaxHostLen + len("[]:65535")
)

// Instance is one addressable copy of a service, as published in a registry.
//
// The zero value is not valid; see Validate for the rules. Backends encode
// an Instance as JSON with the field names below.
type Instance struct {
	// Service is the logical service name: 1..128 bytes of ASCII letters,
	// digits, '.', '_' and '-'.
	Service string `json:"service"`
	// ID identifies the instance within its Service, with the same
	// alphabet and length as Service. An empty ID is derived from Address
	// by IDFromAddress when the instance is registered.
	ID string `json:"id"`
	// Address is where clients reach the instance: "host:port", with an
	// IPv6 host in brackets ("[::1]:8080", with an optional zone of
	// letters, digits, '.', '_' and '-': "[fe80::1%eth0]:8080") and a port
	// in 1..65535.
	Address string `json:"address"`
	// Metadata holds small optional attributes such as a version.
	// Keys are non-empty printable strings; values are valid UTF-8.
	Metadata map[string]string `json:"metadata,omitempty"`

	// Condition says whether the instance should get new traffic; the
	// zero value is ConditionServing. A process publishes serving,
	// not ready or draining; ConditionMaintenance is an operator's
	// override that readers show and Validate rejects.
	Condition Condition `json:"condition,omitempty"`
	// Reason says why the instance is in its Condition, such as a failing
	// check's output: at most MaxReasonLen bytes of printable UTF-8 (see
	// SanitizeReason). It may be empty.
	Reason string `json:"reason,omitempty"`
	// Weight is the instance's relative share of new traffic among the
	// routed instances of its service: 1..MaxWeight, or 0 (unset) for
	// DefaultWeight (see EffectiveWeight). A weight never takes an
	// instance out of rotation: ConditionDraining does.
	Weight int `json:"weight,omitempty"`
	// Zone is the locality the instance runs in, such as "eu-west-1a":
	// empty, or a name with the alphabet and length of Service.
	Zone string `json:"zone,omitempty"`
}

// Key identifies an instance within a registry: its service and ID.
type Key struct {
	Service string
	ID      string
}

// String returns "service/id".
func (k Key) String() string { return k.Service + "/" + k.ID }

// Key returns the instance's service and ID.
func (in Instance) Key() Key { return Key{Service: in.Service, ID: in.ID} }

// Validate reports whether the instance may be registered. An empty ID is
// accepted, since registration derives it from Address. The error, if any,
// is a *FieldError that names the field and the reason and wraps
// ErrInvalidInstance.
func (in Instance) Validate() error {
	if err := ValidateName("Service", in.Service); err != nil {
		return err
	}
	if in.ID != "" {
		if err := ValidateName("ID", in.ID); err != nil {
			return err
		}
	}
	if err := validateAddress(in.Address); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
		if k == "" {
			return invalid("Metadata", "has an empty key")
		}
		if !isPrintable(k) {
			return invalid("Metadata", "key %q has a non-printable character", k)
		}
		if !utf8.ValidString(in.Metadata[k]) {
			return invalid("Metadata["+clip(k)+"]", "value is not valid UTF-8")
		}
	}
	if err := in.validateServing(); err != nil {
		return err
	}
	if in.maxEncodedLen() <= MaxEncodedLen {
		return nil // small enough whatever the escaping: skip encoding it
	}
	b, err := json.Marshal(in)
	if err != nil {
		return invalid("Metadata", "cannot be encoded: %v", err)
	}
	if len(b) > MaxEncodedLen {
		return invalid("Metadata", "makes the instance encode to %d bytes of JSON, more than the %d allowed", len(b), MaxEncodedLen)
	}
	return nil
}

// maxEncodedLen bounds the length of the instance's JSON encoding: field
// names and punctuation, plus every string quoted with each byte escaped
// as \u00XX (six bytes), the worst case.
func (in Instance) maxEncodedLen() int {
	n := len(`{"service":"","id":"","address":"","metadata":{}}`) + 6*(len(in.Service)+len(in.ID)+len(in.Address))
	n += len(`,"condition":"maintenance","reason":"","weight":-9223372036854775808,"zone":""`) + 6*(len(in.Reason)+len(in.Zone))
	for k, v := range in.Metadata {
		n += len(`"":"",`) + 6*(len(k)+len(v))
	}
	return n
}

// Normalize returns a validated deep copy of the instance with its ID
// derived from Address when empty. Backends call it at the top of Register.
func (in Instance) Normalize() (Instance, error) {
	if err := in.Validate(); err != nil {
		return Instance{}, err
	}
	out := in.Clone()
	if out.ID == "" {
		out.ID = IDFromAddress(out.Address)
	}
	return out, nil
}

// Clone returns a deep copy of the instance: its Metadata map is not shared.
func (in Instance) Clone() Instance {
	in.Metadata = maps.Clone(in.Metadata)
	return in
}

// Equal reports whether two instances have the same fields. A nil and an
// empty Metadata are equal; a Weight of 0 and of DefaultWeight are not
// (they route alike, but they are different values).
func (in Instance) Equal(other Instance) bool {
	return in.Service == other.Service && in.ID == other.ID &&
		in.Address == other.Address && maps.Equal(in.Metadata, other.Metadata) &&
		in.Condition == other.Condition && in.Reason == other.Reason &&
		in.Weight == other.Weight && in.Zone == other.Zone
}

// ValidateName checks a service name or an instance ID: 1..128 bytes of ASCII
// letters, digits, '.', '_' and '-', and neither "." nor "..". field names
// the field in the error: the Instance field's Go name, "Service" or "ID",
// as Validate names it.
func ValidateName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "must not be empty")
	case len(name) > MaxNameLen:
		return invalid(field, "is %d bytes long, more than the %d allowed", len(name), MaxNameLen)
	case name == "." || name == "..":
		return invalid(field, "must not be %q", name)
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i]) {
			return invalid(field, "has %q at byte %d; only letters, digits, '.', '_' and '-' are allowed", name[i], i)
		}
	}
	return nil
}

func validateAddress(addr string) error {
	if addr == "" {
		return invalid("Address", "must not be empty")
	}
	if len(addr) > maxAddressLen {
		return invalid("Address", "is %d bytes long, more than the %d a host:port can be", len(addr), maxAddressLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalid("Address", "is not host:port (IPv6 hosts in brackets): %v", err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return invalid("Address", "has port %q; want a number in 1..65535", port)
	}
	switch {
	case host == "":
		return invalid("Address", "has an empty host")
	case len(host) > MaxHostLen:
		return invalid("Address", "has a host of %d bytes, more than the %d allowed", len(host), MaxHostLen)
	case strings.Contains(host, ":"):
		// SplitHostPort only accepts a colon in a bracketed host.
		ip, zone, hasZone := strings.Cut(host, "%")
		if net.ParseIP(ip) == nil {
			return invalid("Address", "has host %q, which is not an IPv6 address", host)
		}
		// The zone (an interface name) must survive JSON and logs intact.
		if hasZone && zone == "" {
			return invalid("Address", "has an empty IPv6 zone")
		}
		for i := 0; i < len(zone); i++ {
			if !isNameByte(zone[i]) {
				return invalid("Address", "has %q in its IPv6 zone at byte %d; want letters, digits, '.', '_' or '-'", zone[i], i)
			}
		}
		return nil
	case strings.HasPrefix(addr, "["):
		return invalid("Address", "has host %q in brackets; brackets are for IPv6 addresses only", host)
	case !isDNSName(host):
		return invalid("Address", "has host %q; want an IP address or a DNS name, which starts and ends with a letter or digit", host)
	}
	for i := 0; i < len(host); i++ {
		if !isNameByte(host[i]) {
			return invalid("Address", "has %q in its host at byte %d; want an IP address or a DNS name", host[i], i)
		}
	}
	return nil
}

// IDFromAddress derives an instance ID from an address, for instances
// registered with an empty ID. Letters, digits, '.', '_' and '-' are kept,
// ':' becomes '-', brackets are dropped and any other byte becomes '_':
// "10.0.0.7:8080" gives "10.0.0.7-8080" and "[::1]:8080" gives "--1-8080".
// A result longer than MaxNameLen keeps its first 119 bytes followed by '-'
// and 8 hex digits of the FNV-1a hash of the address, so it stays unique.
func IDFromAddress(addr string) string {
	var b strings.Builder
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case isNameByte(c):
			b.WriteByte(c)
		case c == ':':
			b.WriteByte('-')
		case c == '[' || c == ']':
		default:
			b.WriteByte('_')
		}
	}
	id := b.String()
	if len(id) > MaxNameLen {
		h := fnv.New32a()
		h.Write([]byte(addr))
		id = fmt.Sprintf("%s-%08x", id[:MaxNameLen-9], h.Sum32())
	}
	return id
}

// isDNSName reports whether host starts and ends with a letter or digit,
// allowing the trailing dot of a fully qualified name. The bytes between are
// checked by the caller.
func isDNSName(host string) bool {
	name := strings.TrimSuffix(host, ".")
	return name != "" && isAlnum(name[0]) && isAlnum(name[len(name)-1])
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// CompareInstances orders instances by Service, then ID.
func CompareInstances(a, b Instance) int {
	return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.ID, b.ID))
}

// NormalizeSet returns a new slice holding deep copies of set, sorted by
// Service then ID, with at most one instance per Key (the last one wins).
// It never returns nil: an empty set is an empty, non-nil slice.
func NormalizeSet(set []Instance) []Instance {
	byKey := make(map[Key]int, len(set))
	out := make([]Instance, 0, len(set))
	for _, in := range set {
		if i, ok := byKey[in.Key()]; ok {
			out[i] = in.Clone()
			continue
		}
		byKey[in.Key()] = len(out)
		out = append(out, in.Clone())
	}
	slices.SortFunc(out, CompareInstances)
	return out
}

// CloneSet returns a deep copy of set, keeping its order. It never returns
// nil.
func CloneSet(set []Instance) []Instance {
	out := make([]Instance, len(set))
	for i, in := range set {
		out[i] = in.Clone()
	}
	return out
}

// EqualSets reports whether two sets hold equal instances in the same order.
func EqualSets(a, b []Instance) bool {
	return slices.EqualFunc(a, b, Instance.Equal)
}
