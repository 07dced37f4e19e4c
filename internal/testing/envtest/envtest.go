// Package envtest runs the table cases of roster's ConfigFromEnv tests
// (the etcd and NATS backends, fxmodule): an environment is a map, read
// through Lookup; each case is a parallel subtest. It imports testing, so
// only _test.go files may import it.
package envtest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Lookup returns a lookup function, as os.LookupEnv, over vars.
func Lookup(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// Reads runs the subtest name: read of env must return want, deeply
// equal, and no error.
func Reads[C any](t *testing.T, name string, read func(func(string) (string, bool)) (C, error), env map[string]string, want C) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		got, err := read(Lookup(env))
		if err != nil {
			t.Fatalf("ConfigFromEnv: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ConfigFromEnv =\n%+v\nwant\n%+v", got, want)
		}
	})
}

// Rejects runs the subtest name: read of env must fail with an error
// wrapping sentinel whose text contains want (every one names the
// variable) and none of secrets.
func Rejects[C any](t *testing.T, name string, read func(func(string) (string, bool)) (C, error), env map[string]string,
	sentinel error, want string, secrets ...string,
) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		got, err := read(Lookup(env))
		if !errors.Is(err, sentinel) {
			t.Fatalf("ConfigFromEnv = %+v, %v; want an error wrapping %v", got, err, sentinel)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q; want it to contain %q", err, want)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q shows a secret, %q", err, s)
			}
		}
	})
}
