package fxmodule_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/fxmodule"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// TestConfigFromEnv: ConfigFromEnv reads ROSTER_BACKEND and hands every
// other variable to etcd.ConfigFromEnv (whose own tests cover each
// variable); ROSTER_TIMEOUT also sets the module's Timeout.
func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want fxmodule.Config
	}{
		{name: "nothing set", env: nil, want: fxmodule.Config{}},
		{name: "memory backend", env: map[string]string{"ROSTER_BACKEND": " memory "}, want: fxmodule.Config{Backend: "memory"}},
		{
			name: "etcd settings",
			env:  map[string]string{"ROSTER_BACKEND": "etcd", "ROSTER_ENDPOINTS": "unixs:///run/etcd.sock", "ROSTER_TIMEOUT": "1m30s"},
			want: fxmodule.Config{
				Backend: "etcd",
				Etcd:    etcd.Config{Endpoints: []string{"unixs:///run/etcd.sock"}, DialTimeout: 90 * time.Second, RequestTimeout: 90 * time.Second},
				Timeout: 90 * time.Second,
			},
		},
		{
			name: "nats settings",
			env: map[string]string{"ROSTER_BACKEND": "nats", "ROSTER_ENDPOINTS": "nats://a:4222,tls://b:4222",
				"ROSTER_TIMEOUT": "3s", "ROSTER_BUCKET": "fleet", "ROSTER_PREFIX": "/etcd/only"},
			want: fxmodule.Config{
				Backend: "nats",
				NATS: nats.Config{Endpoints: []string{"nats://a:4222", "tls://b:4222"}, Bucket: "fleet",
					DialTimeout: 3 * time.Second, RequestTimeout: 3 * time.Second},
				Timeout: 3 * time.Second,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fxmodule.ConfigFromEnv(env(tc.env))
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ConfigFromEnv =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// TestConfigFromEnvErrors: a bad ROSTER_BACKEND wraps ErrInvalidConfig; a
// bad etcd variable wraps both ErrInvalidConfig and etcd.ErrInvalidConfig;
// each names the variable.
func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		env      map[string]string
		want     string
		wantEtcd bool
		wantNATS bool
	}{
		{"unknown backend", map[string]string{"ROSTER_BACKEND": "consul"}, `fxmodule: invalid config: ROSTER_BACKEND is "consul"; want "etcd", "nats" or "memory"`, false, false},
		{"backend in upper case", map[string]string{"ROSTER_BACKEND": "ETCD"}, `ROSTER_BACKEND is "ETCD"`, false, false},
		{"etcd variable", map[string]string{"ROSTER_TTL": "1500ms"}, "fxmodule: invalid config: etcd: invalid config: ROSTER_TTL is 1.5s; want a whole number of seconds", true, false},
		{"nats variable", map[string]string{"ROSTER_BACKEND": "nats", "ROSTER_ENDPOINTS": "http://a:2379"},
			`fxmodule: invalid config: nats: invalid config: ROSTER_ENDPOINTS endpoint "http://a:2379": scheme http://`, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fxmodule.ConfigFromEnv(env(tc.env))
			if !errors.Is(err, fxmodule.ErrInvalidConfig) || errors.Is(err, etcd.ErrInvalidConfig) != tc.wantEtcd ||
				errors.Is(err, nats.ErrInvalidConfig) != tc.wantNATS {
				t.Fatalf("ConfigFromEnv = %+v, %v; want an error wrapping ErrInvalidConfig (and etcd's: %v, NATS's: %v)",
					got, err, tc.wantEtcd, tc.wantNATS)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to contain %q", err, tc.want)
			}
		})
	}
}
