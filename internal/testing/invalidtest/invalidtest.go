// Package invalidtest holds the invalid service names and IDs that every
// operator view must refuse, for discoverytest's OperatorView subtest and
// the backends' own tests (which also check that the registry saw no
// write). It imports testing, so only test code may import it.
package invalidtest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/roster-sd/roster/discovery"
)

// Keys are service and ID pairs of which one is not a valid name: empty,
// too long, "." or "..", or with a byte outside letters, digits, '.', '_'
// and '-' (a separator of etcd's keys or NATS's subjects, a NATS
// wildcard, the escape of NATS's keys).
var Keys = []struct{ Service, ID string }{
	{"", "p-1"},
	{"payments", ""},
	{"payments/p-1", "x"},
	{"payments", "p-1/x"},
	{"payments.p-1", ""},
	{"payments", "p-1.*"},
	{"*", "p-1"},
	{">", "p-1"},
	{"payments", ">"},
	{"..", "payments"},
	{"payments", ".."},
	{"pay ments", "p-1"},
	{"pay=ments", "p-1"},
	{strings.Repeat("s", discovery.MaxNameLen+1), "p-1"},
}

// Services are invalid service names.
var Services = []string{"", "pay/ments", "..", "*", ">", "pay.*", "pay ments", "pay=ments"}

// CheckRefused calls v.Delete with each of Keys and v.Instances with each
// of Services, and fails t unless every call returns an error wrapping
// discovery.ErrInvalidInstance.
func CheckRefused(ctx context.Context, t testing.TB, v discovery.OperatorView) {
	t.Helper()
	for _, k := range Keys {
		if err := v.Delete(ctx, k.Service, k.ID); !errors.Is(err, discovery.ErrInvalidInstance) {
			t.Errorf("Delete(%.20q, %q) = %v; want an error wrapping ErrInvalidInstance", k.Service, k.ID, err)
		}
	}
	for _, service := range Services {
		if _, _, err := v.Instances(ctx, service); !errors.Is(err, discovery.ErrInvalidInstance) {
			t.Errorf("Instances(%q) = %v; want an error wrapping ErrInvalidInstance", service, err)
		}
	}
}
