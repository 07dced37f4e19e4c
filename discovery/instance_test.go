package discovery_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// secret is a metadata value that must never show up in an error message.
const secret = "TOPSECRET"

func secretMetadata() map[string]string {
	return map[string]string{"token": secret}
}

func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   discovery.Instance
	}{
		{"ipv4", discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}},
		{"ipv6 loopback", discovery.Instance{Service: "payments", ID: "p-1", Address: "[::1]:8080"}},
		{"ipv6 full", discovery.Instance{Service: "payments", ID: "p-1", Address: "[2001:db8::1]:443"}},
		{"ipv6 mapped ipv4", discovery.Instance{Service: "payments", ID: "p-1", Address: "[::ffff:10.0.0.7]:443"}},
		{"ipv6 with zone", discovery.Instance{Service: "payments", ID: "p-1", Address: "[fe80::1%eth0]:80"}},
		{"hostname", discovery.Instance{Service: "payments", ID: "p-1", Address: "db-1.internal:5432"}},
		{"single label host", discovery.Instance{Service: "payments", ID: "p-1", Address: "localhost:1"}},
		{"highest port", discovery.Instance{Service: "payments", ID: "p-1", Address: "localhost:65535"}},
		{"longest host", discovery.Instance{Service: "s", Address: strings.Repeat("h", discovery.MaxHostLen) + ":80"}},
		{"empty ID", discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"}},
		{"all name bytes", discovery.Instance{Service: "a.b_c-D9", ID: "X_y.z-0", Address: "10.0.0.7:8080"}},
		{"longest names", discovery.Instance{
			Service: strings.Repeat("s", discovery.MaxNameLen),
			ID:      strings.Repeat("i", discovery.MaxNameLen),
			Address: "10.0.0.7:8080",
		}},
		{"metadata", discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080",
			Metadata: map[string]string{"zone": "eu-west-1a", "version": "1.2.3"}}},
		{"unicode metadata", discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080",
			Metadata: map[string]string{"clé": "välue ✓", "empty": ""}}},
		{"empty metadata map", discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080",
			Metadata: map[string]string{}}},
		{"large metadata under the limit", discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080",
			Metadata: map[string]string{"blob": strings.Repeat("x", 60<<10)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.in.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	const addr = "10.0.0.7:8080"
	long := strings.Repeat("a", discovery.MaxNameLen+1)
	cases := []struct {
		name      string
		in        discovery.Instance
		wantField string
	}{
		{"empty service", discovery.Instance{Address: addr}, "Service"},
		{"service too long", discovery.Instance{Service: long, Address: addr}, "Service"},
		{"service with slash", discovery.Instance{Service: "pay/ments", Address: addr}, "Service"},
		{"service with space", discovery.Instance{Service: "pay ments", Address: addr}, "Service"},
		{"service with unicode", discovery.Instance{Service: "paymënts", Address: addr}, "Service"},
		{"service with colon", discovery.Instance{Service: "pay:ments", Address: addr}, "Service"},
		{"service dot", discovery.Instance{Service: ".", Address: addr}, "Service"},
		{"service dot dot", discovery.Instance{Service: "..", Address: addr}, "Service"},
		{"ID too long", discovery.Instance{Service: "s", ID: long, Address: addr}, "ID"},
		{"ID with slash", discovery.Instance{Service: "s", ID: "a/b", Address: addr}, "ID"},
		{"ID with space", discovery.Instance{Service: "s", ID: " ", Address: addr}, "ID"},
		{"ID with unicode", discovery.Instance{Service: "s", ID: "ïd", Address: addr}, "ID"},
		{"ID dot", discovery.Instance{Service: "s", ID: ".", Address: addr}, "ID"},
		{"ID dot dot", discovery.Instance{Service: "s", ID: "..", Address: addr}, "ID"},
		{"empty address", discovery.Instance{Service: "s"}, "Address"},
		{"no port", discovery.Instance{Service: "s", Address: "10.0.0.7"}, "Address"},
		{"empty port", discovery.Instance{Service: "s", Address: "10.0.0.7:"}, "Address"},
		{"port 0", discovery.Instance{Service: "s", Address: "10.0.0.7:0"}, "Address"},
		{"port 65536", discovery.Instance{Service: "s", Address: "10.0.0.7:65536"}, "Address"},
		{"port with leading zero", discovery.Instance{Service: "s", Address: "10.0.0.7:08080"}, "Address"},
		{"port with plus sign", discovery.Instance{Service: "s", Address: "10.0.0.7:+80"}, "Address"},
		{"negative port", discovery.Instance{Service: "s", Address: "10.0.0.7:-1"}, "Address"},
		{"non-numeric port", discovery.Instance{Service: "s", Address: "10.0.0.7:http"}, "Address"},
		{"ipv6 without brackets", discovery.Instance{Service: "s", Address: "::1:8080"}, "Address"},
		{"ipv6 without port", discovery.Instance{Service: "s", Address: "[::1]"}, "Address"},
		{"bracketed non-ip with colon", discovery.Instance{Service: "s", Address: "[::zz]:80"}, "Address"},
		{"ipv6 empty zone", discovery.Instance{Service: "s", Address: "[fe80::1%]:80"}, "Address"},
		{"ipv6 zone with space", discovery.Instance{Service: "s", Address: "[fe80::1%a b]:80"}, "Address"},
		{"ipv6 zone with newline", discovery.Instance{Service: "s", Address: "[fe80::1%a\nb]:80"}, "Address"},
		{"ipv6 zone invalid utf-8", discovery.Instance{Service: "s", Address: "[fe80::1%\xff]:80"}, "Address"},
		{"empty host", discovery.Instance{Service: "s", Address: ":8080"}, "Address"},
		{"host too long", discovery.Instance{Service: "s", Address: strings.Repeat("h", discovery.MaxHostLen+1) + ":80"}, "Address"},
		{"host with space", discovery.Instance{Service: "s", Address: "a b:80"}, "Address"},
		{"host with slash", discovery.Instance{Service: "s", Address: "a/b:80"}, "Address"},
		{"url", discovery.Instance{Service: "s", Address: "http://a:80"}, "Address"},
		{"empty metadata key", discovery.Instance{Service: "s", Address: addr,
			Metadata: map[string]string{"": secret}}, "Metadata"},
		{"non-printable metadata key", discovery.Instance{Service: "s", Address: addr,
			Metadata: map[string]string{"a\x00b": secret}}, "Metadata"},
		{"newline in metadata key", discovery.Instance{Service: "s", Address: addr,
			Metadata: map[string]string{"a\nb": secret}}, "Metadata"},
		{"invalid utf-8 metadata key", discovery.Instance{Service: "s", Address: addr,
			Metadata: map[string]string{"k\xff": secret}}, "Metadata"},
		{"invalid utf-8 metadata value", discovery.Instance{Service: "s", Address: addr,
			Metadata: map[string]string{"token": secret + "\xff"}}, "Metadata[token]"},
		{"encoded size over the limit", discovery.Instance{Service: "s", Address: addr,
			Metadata: map[string]string{"token": strings.Repeat(secret, (discovery.MaxEncodedLen/len(secret))+1)}}, "Metadata"},
		{"encoded size over the limit by escaping", discovery.Instance{Service: "s", Address: addr,
			// Each '<' is escaped to \u003c: 6 bytes of JSON for 1 byte.
			Metadata: map[string]string{"token": secret + strings.Repeat("<", 12<<10)}}, "Metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.in.Metadata == nil {
				tc.in.Metadata = secretMetadata()
			}
			err := tc.in.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error on %s", tc.wantField)
			}
			if !errors.Is(err, discovery.ErrInvalidInstance) {
				t.Errorf("errors.Is(%v, ErrInvalidInstance) = false, want true", err)
			}
			var fe *discovery.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("errors.As(%v, *FieldError) = false, want true", err)
			}
			if got, want := fe.Field, tc.wantField; got != want {
				t.Errorf("Field = %q, want %q (error: %v)", got, want, err)
			}
			if fe.Reason == "" {
				t.Errorf("Reason is empty")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantField) {
				t.Errorf("error %q does not name the field %q", msg, tc.wantField)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q reveals a metadata value", msg)
			}
			// Normalize rejects what Validate rejects.
			if _, nerr := tc.in.Normalize(); !errors.Is(nerr, discovery.ErrInvalidInstance) {
				t.Errorf("Normalize() error = %v, want ErrInvalidInstance", nerr)
			}
		})
	}
}

func TestFieldErrorMessage(t *testing.T) {
	t.Parallel()
	err := discovery.Instance{Address: "10.0.0.7:8080"}.Validate()
	got := fmt.Sprint(err)
	want := "discovery: invalid instance: Service must not be empty"
	if got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"simple", "payments", false},
		{"one byte", "a", false},
		{"longest", strings.Repeat("a", discovery.MaxNameLen), false},
		{"three dots", "...", false},
		{"leading dot", ".hidden", false},
		{"empty", "", true},
		{"too long", strings.Repeat("a", discovery.MaxNameLen+1), true},
		{"dot", ".", true},
		{"dot dot", "..", true},
		{"tab", "a\tb", true},
		{"nul", "a\x00", true},
		{"plus", "a+b", true},
		{"at", "a@b", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := discovery.ValidateName("Thing", tc.in)
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("ValidateName(%q) = %v, want error: %v", tc.in, err, tc.wantErr)
			}
			if err == nil {
				return
			}
			var fe *discovery.FieldError
			if !errors.As(err, &fe) || fe.Field != "Thing" {
				t.Errorf("ValidateName(%q) = %v, want a *FieldError on Thing", tc.in, err)
			}
			if !errors.Is(err, discovery.ErrInvalidInstance) {
				t.Errorf("errors.Is(%v, ErrInvalidInstance) = false", err)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   discovery.Instance
		want discovery.Instance
	}{
		{
			name: "derives ID",
			in:   discovery.Instance{Service: "payments", Address: "10.0.0.7:8080"},
			want: discovery.Instance{Service: "payments", ID: "10.0.0.7-8080", Address: "10.0.0.7:8080"},
		},
		{
			name: "keeps ID",
			in:   discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"},
			want: discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"},
		},
		{
			name: "ipv6",
			in:   discovery.Instance{Service: "payments", Address: "[::1]:8080", Metadata: map[string]string{"a": "b"}},
			want: discovery.Instance{Service: "payments", ID: "--1-8080", Address: "[::1]:8080", Metadata: map[string]string{"a": "b"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.in.Normalize()
			if err != nil {
				t.Fatalf("Normalize() error = %v", err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("Normalize() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNormalizeCopiesMetadata(t *testing.T) {
	t.Parallel()
	in := discovery.Instance{Service: "s", Address: "10.0.0.7:80", Metadata: map[string]string{"zone": "a"}}
	got, err := in.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	in.Metadata["zone"] = "changed"
	if want := "a"; got.Metadata["zone"] != want {
		t.Errorf("Normalize() result changed with its input: zone = %q, want %q", got.Metadata["zone"], want)
	}
}

func TestInstanceCloneAndEqual(t *testing.T) {
	t.Parallel()
	in := discovery.Instance{Service: "s", ID: "i", Address: "a:1", Metadata: map[string]string{"k": "v"}}
	c := in.Clone()
	if !c.Equal(in) {
		t.Fatalf("Clone() = %+v, not Equal to %+v", c, in)
	}
	c.Metadata["k"] = "w"
	if got, want := in.Metadata["k"], "v"; got != want {
		t.Errorf("mutating the clone changed the original: %q, want %q", got, want)
	}

	cases := []struct {
		name string
		a, b discovery.Instance
		want bool
	}{
		{"zero", discovery.Instance{}, discovery.Instance{}, true},
		{"nil and empty metadata", discovery.Instance{Service: "s"}, discovery.Instance{Service: "s", Metadata: map[string]string{}}, true},
		{"service", discovery.Instance{Service: "s"}, discovery.Instance{Service: "t"}, false},
		{"id", discovery.Instance{ID: "a"}, discovery.Instance{ID: "b"}, false},
		{"address", discovery.Instance{Address: "a:1"}, discovery.Instance{Address: "a:2"}, false},
		{"metadata value", discovery.Instance{Metadata: map[string]string{"k": "v"}}, discovery.Instance{Metadata: map[string]string{"k": "w"}}, false},
		{"metadata key", discovery.Instance{Metadata: map[string]string{"k": ""}}, discovery.Instance{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.a.Equal(tc.b); got != tc.want {
				t.Errorf("Equal() = %v, want %v", got, tc.want)
			}
			if got := tc.b.Equal(tc.a); got != tc.want {
				t.Errorf("Equal() reversed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "a:1"}
	if got, want := in.Key(), (discovery.Key{Service: "payments", ID: "p-1"}); got != want {
		t.Errorf("Key() = %v, want %v", got, want)
	}
	if got, want := in.Key().String(), "payments/p-1"; got != want {
		t.Errorf("Key().String() = %q, want %q", got, want)
	}
}

func TestInstanceJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   discovery.Instance
		want string
	}{
		{
			name: "no metadata",
			in:   discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"},
			want: `{"service":"payments","id":"p-1","address":"10.0.0.7:8080"}`,
		},
		{
			name: "metadata",
			in:   discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Metadata: map[string]string{"zone": "a"}},
			want: `{"service":"payments","id":"p-1","address":"10.0.0.7:8080","metadata":{"zone":"a"}}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); got != tc.want {
				t.Errorf("json = %s, want %s", got, tc.want)
			}
		})
	}
}

func fnv32a(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

func TestIDFromAddress(t *testing.T) {
	t.Parallel()
	longHost := strings.Repeat("a", 200)
	cases := []struct {
		addr string
		want string
	}{
		{"10.0.0.7:8080", "10.0.0.7-8080"},
		{"[::1]:8080", "--1-8080"},
		{"[2001:db8::1]:443", "2001-db8--1-443"},
		{"[fe80::1%eth0]:80", "fe80--1_eth0-80"},
		{"db-1.internal:5432", "db-1.internal-5432"},
		{"under_score:1", "under_score-1"},
		{strings.Repeat("h", 118) + ":80", strings.Repeat("h", 118) + "-80"}, // exactly MaxNameLen-7
		{strings.Repeat("h", 125) + ":80", strings.Repeat("h", 125) + "-80"}, // exactly MaxNameLen
		{longHost + ":80", strings.Repeat("a", 119) + fmt.Sprintf("-%08x", fnv32a(longHost+":80"))},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			got := discovery.IDFromAddress(tc.addr)
			if got != tc.want {
				t.Errorf("IDFromAddress(%q) = %q, want %q", tc.addr, got, tc.want)
			}
			if err := discovery.ValidateName("ID", got); err != nil {
				t.Errorf("IDFromAddress(%q) = %q, which fails ValidateName: %v", tc.addr, got, err)
			}
		})
	}
}

func TestIDFromAddressLongStaysUnique(t *testing.T) {
	t.Parallel()
	host := strings.Repeat("h", discovery.MaxHostLen)
	a, b := host+":8080", host+":8081"
	idA, idB := discovery.IDFromAddress(a), discovery.IDFromAddress(b)
	if idA == idB {
		t.Errorf("IDFromAddress(%q) = IDFromAddress(%q) = %q, want different IDs", a, b, idA)
	}
	for _, id := range []string{idA, idB} {
		if got, want := len(id), discovery.MaxNameLen; got != want {
			t.Errorf("len(%q) = %d, want %d", id, got, want)
		}
		if err := discovery.ValidateName("ID", id); err != nil {
			t.Errorf("ValidateName(%q) = %v", id, err)
		}
	}
	if got, want := idA[:discovery.MaxNameLen-9], strings.Repeat("h", discovery.MaxNameLen-9); got != want {
		t.Errorf("prefix = %q, want %q", got, want)
	}
}

func TestIDFromAddressAlwaysValid(t *testing.T) {
	t.Parallel()
	var addrs []string
	for _, host := range []string{
		"a", "10.0.0.7", "[::1]", "[::]", "[fe80::1%eth0]", "[2001:db8:0:0:0:0:0:1]",
		"[::ffff:192.0.2.1]", "example.com", "example.com.", "a-b_c",
		strings.Repeat("x", 120), strings.Repeat("y.", 126), strings.Repeat("z", discovery.MaxHostLen),
		"[" + strings.Repeat("0:", 7) + "0]",
	} {
		for _, port := range []string{"1", "80", "8080", "65535"} {
			addrs = append(addrs, host+":"+port)
		}
	}
	seen := make(map[string]string)
	for _, addr := range addrs {
		in := discovery.Instance{Service: "s", Address: addr}
		if err := in.Validate(); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", addr, err)
			continue
		}
		id := discovery.IDFromAddress(addr)
		if err := discovery.ValidateName("ID", id); err != nil {
			t.Errorf("IDFromAddress(%q) = %q: %v", addr, id, err)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("IDFromAddress(%q) = IDFromAddress(%q) = %q", addr, other, id)
		}
		seen[id] = addr
	}
}

// FuzzIDFromAddress checks that every address Validate accepts gives an
// instance whose derived ID is valid, and that the normalized instance
// survives a JSON round trip unchanged (backends store instances as JSON).
func FuzzIDFromAddress(f *testing.F) {
	for _, seed := range []string{
		"10.0.0.7:8080", "[::1]:8080", "[fe80::1%eth0]:80", "db-1.internal:5432",
		"localhost:65535", strings.Repeat("h", discovery.MaxHostLen) + ":65535",
		"[fe80::1%\xff]:80", "[fe80::1%]:80", "[fe80::1%a\nb]:80", "[1.2.3.4]:80",
		"...:1", "::1:80", "a:08080", "", ":", "[]:80", "[::1%x:y]:80",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		id := discovery.IDFromAddress(addr)
		if len(id) > discovery.MaxNameLen {
			t.Fatalf("IDFromAddress(%q) = %q, %d bytes long", addr, id, len(id))
		}
		in := discovery.Instance{Service: "s", Address: addr}
		if in.Validate() != nil {
			return
		}
		n, err := in.Normalize()
		if err != nil {
			t.Fatalf("Validate accepted %q but Normalize failed: %v", addr, err)
		}
		if n.ID != id {
			t.Fatalf("Normalize().ID = %q, want IDFromAddress = %q", n.ID, id)
		}
		if err := discovery.ValidateName("ID", n.ID); err != nil {
			t.Fatalf("IDFromAddress(%q) = %q: %v", addr, n.ID, err)
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("normalized instance of %q fails Validate: %v", addr, err)
		}
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var back discovery.Instance
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !back.Equal(n) {
			t.Fatalf("JSON round trip of %+v gave %+v", n, back)
		}
	})
}

// FuzzValidate checks that every instance Validate accepts fits the encoded
// size limit and survives a JSON round trip unchanged.
func FuzzValidate(f *testing.F) {
	f.Add("payments", "p-1", "10.0.0.7:8080", "zone", "eu-1")
	f.Add("s", "", "[::1]:1", "clé", "välue")
	f.Add("s", "i", "a:1", "k", "\xff")
	f.Add("s", "i", "a:1", "\u2028", "<&>")
	f.Add("s", "i", "a:1", strings.Repeat("k", 100)+"\x01", "v")
	f.Add("s", "i", strings.Repeat("h", 300)+":1", "k", "v")
	f.Fuzz(func(t *testing.T, service, id, addr, key, value string) {
		in := discovery.Instance{Service: service, ID: id, Address: addr, Metadata: map[string]string{key: value}}
		err := in.Validate()
		// The error must not depend on the metadata value beyond what
		// Validate judges of it (valid UTF-8, the size of its JSON): the
		// same instance with the value masked, each byte replaced by one
		// that keeps both, gives the same answer. (Looking for the value
		// in the error's text finds it in the address, or in the message's
		// own words, when they happen to hold the same characters.)
		masked := discovery.Instance{Service: service, ID: id, Address: addr, Metadata: map[string]string{key: maskValue(value)}}
		if merr := masked.Validate(); fmt.Sprint(err) != fmt.Sprint(merr) {
			t.Fatalf("Validate() = %v, but %v with the metadata value %q masked as %q: the error depends on the value", err, merr, value, maskValue(value))
		}
		if err != nil {
			if !errors.Is(err, discovery.ErrInvalidInstance) {
				t.Fatalf("Validate() = %v, not wrapping ErrInvalidInstance", err)
			}
			if len(err.Error()) > maxErrorLen {
				t.Fatalf("Validate() gives an error of %d bytes; want at most %d", len(err.Error()), maxErrorLen)
			}
			return
		}
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > discovery.MaxEncodedLen {
			t.Fatalf("valid instance encodes to %d bytes", len(b))
		}
		var back discovery.Instance
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !back.Equal(in) {
			t.Fatalf("JSON round trip of %+v gave %+v", in, back)
		}
	})
}

// maskValue replaces each ASCII letter and digit of v with 'x', keeping
// every other byte: v's UTF-8 validity and the length of its JSON encoding
// stay the same (letters and digits are never escaped; other bytes, which
// may be, are kept), while its text is gone.
func maskValue(v string) string {
	b := []byte(v)
	for i, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b[i] = 'x'
		}
	}
	return string(b)
}

func inst(service, id string) discovery.Instance {
	return discovery.Instance{Service: service, ID: id, Address: "10.0.0.7:8080"}
}

func keys(set []discovery.Instance) []string {
	out := make([]string, 0, len(set))
	for _, in := range set {
		out = append(out, in.Key().String())
	}
	return out
}

func TestNormalizeSet(t *testing.T) {
	t.Parallel()
	withAddr := func(in discovery.Instance, addr string) discovery.Instance {
		in.Address = addr
		return in
	}
	cases := []struct {
		name string
		in   []discovery.Instance
		want []discovery.Instance
	}{
		{"nil", nil, []discovery.Instance{}},
		{"empty", []discovery.Instance{}, []discovery.Instance{}},
		{"one", []discovery.Instance{inst("s", "a")}, []discovery.Instance{inst("s", "a")}},
		{
			name: "sorted by service then ID",
			in:   []discovery.Instance{inst("b", "1"), inst("a", "2"), inst("a", "10"), inst("a", "1")},
			want: []discovery.Instance{inst("a", "1"), inst("a", "10"), inst("a", "2"), inst("b", "1")},
		},
		{
			name: "duplicates: last wins",
			in: []discovery.Instance{
				withAddr(inst("s", "b"), "first:1"), inst("s", "a"), withAddr(inst("s", "b"), "second:1"),
				withAddr(inst("s", "b"), "last:1"),
			},
			want: []discovery.Instance{inst("s", "a"), withAddr(inst("s", "b"), "last:1")},
		},
		{
			name: "same ID in different services is kept",
			in:   []discovery.Instance{inst("t", "x"), inst("s", "x")},
			want: []discovery.Instance{inst("s", "x"), inst("t", "x")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := discovery.CloneSet(tc.in)
			got := discovery.NormalizeSet(tc.in)
			if got == nil {
				t.Fatalf("NormalizeSet(%v) = nil, want non-nil", tc.in)
			}
			if !discovery.EqualSets(got, tc.want) {
				t.Errorf("NormalizeSet() = %+v, want %+v", got, tc.want)
			}
			if !discovery.EqualSets(tc.in, before) {
				t.Errorf("NormalizeSet modified its input: %+v, was %+v", tc.in, before)
			}
		})
	}
}

func TestNormalizeSetDeepCopies(t *testing.T) {
	t.Parallel()
	in := []discovery.Instance{
		{Service: "s", ID: "b", Address: "b:1", Metadata: map[string]string{"zone": "b"}},
		{Service: "s", ID: "a", Address: "a:1", Metadata: map[string]string{"zone": "a"}},
	}
	got := discovery.NormalizeSet(in)
	in[0].Metadata["zone"] = "changed"
	in[1].Metadata["new"] = "key"
	in[1].Address = "changed:1"
	want := []discovery.Instance{
		{Service: "s", ID: "a", Address: "a:1", Metadata: map[string]string{"zone": "a"}},
		{Service: "s", ID: "b", Address: "b:1", Metadata: map[string]string{"zone": "b"}},
	}
	if !discovery.EqualSets(got, want) {
		t.Errorf("after mutating the input, NormalizeSet() result = %+v, want %+v", got, want)
	}
	got[0].Metadata["zone"] = "mutated"
	if in[1].Metadata["zone"] != "a" {
		t.Errorf("mutating the result changed the input: %+v", in[1])
	}
}

func TestCloneSet(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   []discovery.Instance
	}{
		{"nil", nil},
		{"empty", []discovery.Instance{}},
		{"keeps order", []discovery.Instance{inst("s", "b"), inst("s", "a"), inst("s", "b")}},
		{"metadata", []discovery.Instance{{Service: "s", ID: "a", Metadata: map[string]string{"k": "v"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := discovery.CloneSet(tc.in)
			if got == nil {
				t.Fatal("CloneSet() = nil, want non-nil")
			}
			if !discovery.EqualSets(got, tc.in) {
				t.Errorf("CloneSet() = %+v, want %+v", got, tc.in)
			}
			for i := range got {
				if got[i].Metadata != nil {
					got[i].Metadata["k"] = "changed"
					if tc.in[i].Metadata["k"] == "changed" {
						t.Errorf("CloneSet shares metadata of %v", tc.in[i].Key())
					}
				}
			}
		})
	}
}

func TestEqualSets(t *testing.T) {
	t.Parallel()
	md := func(v string) discovery.Instance {
		return discovery.Instance{Service: "s", ID: "a", Metadata: map[string]string{"k": v}}
	}
	cases := []struct {
		name string
		a, b []discovery.Instance
		want bool
	}{
		{"nil and empty", nil, []discovery.Instance{}, true},
		{"same", []discovery.Instance{inst("s", "a"), inst("s", "b")}, []discovery.Instance{inst("s", "a"), inst("s", "b")}, true},
		{"order matters", []discovery.Instance{inst("s", "a"), inst("s", "b")}, []discovery.Instance{inst("s", "b"), inst("s", "a")}, false},
		{"length", []discovery.Instance{inst("s", "a")}, []discovery.Instance{inst("s", "a"), inst("s", "a")}, false},
		{"metadata", []discovery.Instance{md("x")}, []discovery.Instance{md("y")}, false},
		{"metadata equal", []discovery.Instance{md("x")}, []discovery.Instance{md("x")}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := discovery.EqualSets(tc.a, tc.b); got != tc.want {
				t.Errorf("EqualSets() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompareInstances(t *testing.T) {
	t.Parallel()
	set := []discovery.Instance{inst("b", "a"), inst("a", "b"), inst("a", "a"), inst("", "z")}
	slices.SortFunc(set, discovery.CompareInstances)
	if got, want := keys(set), []string{"/z", "a/a", "a/b", "b/a"}; !slices.Equal(got, want) {
		t.Errorf("sorted = %v, want %v", got, want)
	}
	if got := discovery.CompareInstances(inst("s", "a"), discovery.Instance{Service: "s", ID: "a", Address: "other:1"}); got != 0 {
		t.Errorf("CompareInstances of same key = %d, want 0", got)
	}
}
