package fxmodule_test

import (
	"testing"
	"time"

	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/internal/testing/envtest"
)

var env = envtest.Lookup

// TestConfigFromEnv: ConfigFromEnv reads the module's own variables
// (ROSTER_BACKEND, ROSTER_TIMEOUT...) and leaves the backend's to the
// backend's module (etcdfx, natsfx), whose ConfigFromEnv reads them.
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
			want: fxmodule.Config{Backend: "etcd", Timeout: 90 * time.Second},
		},
		{
			name: "nats settings",
			env: map[string]string{"ROSTER_BACKEND": "nats", "ROSTER_ENDPOINTS": "nats://a:4222,tls://b:4222",
				"ROSTER_TIMEOUT": "3s", "ROSTER_BUCKET": "fleet", "ROSTER_DRAIN_DELAY": "2s"},
			want: fxmodule.Config{Backend: "nats", Timeout: 3 * time.Second, DrainDelay: 2 * time.Second},
		},
	}
	for _, tc := range cases {
		envtest.Reads(t, tc.name, fxmodule.ConfigFromEnv, tc.env, tc.want)
	}
}

// TestConfigFromEnvErrors: a bad ROSTER_BACKEND or ROSTER_TIMEOUT wraps
// ErrInvalidConfig and names the variable. (A bad backend variable is
// rejected by the backend's module: see TestConfigFromEnvironment.)
func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown backend", map[string]string{"ROSTER_BACKEND": "consul"}, `fxmodule: invalid config: ROSTER_BACKEND is "consul"; want "etcd", "nats" or "memory"`},
		{"backend in upper case", map[string]string{"ROSTER_BACKEND": "ETCD"}, `ROSTER_BACKEND is "ETCD"`},
		{"timeout", map[string]string{"ROSTER_TIMEOUT": "5"}, `fxmodule: invalid config: ROSTER_TIMEOUT is "5"; want a Go duration`},
	}
	for _, tc := range cases {
		envtest.Rejects(t, tc.name, fxmodule.ConfigFromEnv, tc.env, fxmodule.ErrInvalidConfig, tc.want)
	}
}
