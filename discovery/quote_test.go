package discovery_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// maxErrorLen bounds the text of any Validate error: a FieldError quotes
// at most a prefix of a foreign string and gives its length.
const maxErrorLen = 512

// TestValidateErrorsAreBounded: values written by another writer reach
// Validate through every watcher, and its error is logged and printed. A
// 1 MiB metadata key, address or port gave a 1 MiB error; each error now
// quotes a prefix and the length.
func TestValidateErrorsAreBounded(t *testing.T) {
	t.Parallel()
	const n = 1 << 20
	big := strings.Repeat("k", n)
	cases := []struct {
		name string
		in   discovery.Instance
		want string // the error must contain it
	}{
		{"non-printable key", discovery.Instance{Service: "s", Address: "a:1", Metadata: map[string]string{big + "\x01": "v"}},
			"(1048577 bytes)"},
		{"value not UTF-8 under a long key", discovery.Instance{Service: "s", Address: "a:1", Metadata: map[string]string{big: "\xff"}},
			"(1048576 bytes)"},
		{"long address", discovery.Instance{Service: "s", Address: big}, "1048576 bytes"},
		{"long port", discovery.Instance{Service: "s", Address: "a:" + strings.Repeat("1", n)}, "1048578 bytes"},
		{"long IPv6 zone", discovery.Instance{Service: "s", Address: "[fe80::1%" + strings.Repeat("z", 200) + "!]:1"}, "!"},
	}
	for _, c := range cases {
		err := c.in.Validate()
		if !errors.Is(err, discovery.ErrInvalidInstance) {
			t.Errorf("%s: Validate = %v; want ErrInvalidInstance", c.name, err)
			continue
		}
		msg := err.Error()
		if len(msg) > maxErrorLen || !strings.Contains(msg, c.want) {
			t.Errorf("%s: error of %d bytes (%.200q...); want at most %d, containing %q", c.name, len(msg), msg, maxErrorLen, c.want)
		}
	}
}
