package fxmodule_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/fxmodule"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want fxmodule.Config
	}{
		{name: "nothing set", env: nil, want: fxmodule.Config{}},
		{name: "empty values are unset", env: map[string]string{"ROSTER_TTL": "", "ROSTER_ENDPOINTS": " "}, want: fxmodule.Config{}},
		{
			name: "everything",
			env: map[string]string{
				"ROSTER_BACKEND":   "etcd",
				"ROSTER_ENDPOINTS": "10.0.0.1:2379, https://10.0.0.2:2379",
				"ROSTER_PREFIX":    "/tenant-a/services",
				"ROSTER_TTL":       "10s",
				"ROSTER_CACERT":    "/etc/roster/ca.pem",
				"ROSTER_CERT":      "/etc/roster/client.pem",
				"ROSTER_KEY":       "/etc/roster/client-key.pem",
				"ROSTER_USERNAME":  "svc",
				"ROSTER_PASSWORD":  " s3cret with spaces ",
				"ROSTER_TIMEOUT":   "1m30s",
			},
			want: fxmodule.Config{
				Backend: "etcd",
				Etcd: etcd.Config{
					Endpoints:      []string{"10.0.0.1:2379", "https://10.0.0.2:2379"},
					Prefix:         "/tenant-a/services",
					TTL:            10 * time.Second,
					CACertFile:     "/etc/roster/ca.pem",
					CertFile:       "/etc/roster/client.pem",
					KeyFile:        "/etc/roster/client-key.pem",
					Username:       "svc",
					Password:       " s3cret with spaces ",
					DialTimeout:    90 * time.Second,
					RequestTimeout: 90 * time.Second,
				},
				Timeout: 90 * time.Second,
			},
		},
		{name: "memory backend", env: map[string]string{"ROSTER_BACKEND": "memory"}, want: fxmodule.Config{Backend: "memory"}},
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

func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		wantVar string // the variable the error must name
	}{
		{"unknown backend", map[string]string{"ROSTER_BACKEND": "consul"}, `ROSTER_BACKEND is "consul"; want "etcd" or "memory"`},
		{"backend in upper case", map[string]string{"ROSTER_BACKEND": "ETCD"}, "ROSTER_BACKEND"},
		{"empty endpoint", map[string]string{"ROSTER_ENDPOINTS": "a:2379,,b:2379"}, "ROSTER_ENDPOINTS"},
		{"unknown scheme", map[string]string{"ROSTER_ENDPOINTS": "ftp://a:2379"}, `ROSTER_ENDPOINTS endpoint "ftp://a:2379"`},
		{"trailing comma", map[string]string{"ROSTER_ENDPOINTS": "a:2379,"}, "ROSTER_ENDPOINTS"},
		{"relative prefix", map[string]string{"ROSTER_PREFIX": "roster"}, "ROSTER_PREFIX"},
		{"TTL not a duration", map[string]string{"ROSTER_TTL": "15"}, "ROSTER_TTL"},
		{"TTL negative", map[string]string{"ROSTER_TTL": "-5s"}, "ROSTER_TTL"},
		{"TTL below a second", map[string]string{"ROSTER_TTL": "500ms"}, "ROSTER_TTL"},
		{"TTL not whole seconds", map[string]string{"ROSTER_TTL": "1500ms"}, "ROSTER_TTL"},
		{"timeout not a duration", map[string]string{"ROSTER_TIMEOUT": "soon"}, "ROSTER_TIMEOUT"},
		{"timeout zero", map[string]string{"ROSTER_TIMEOUT": "0s"}, "ROSTER_TIMEOUT"},
		{"cert without key", map[string]string{"ROSTER_CERT": "c.pem"}, "ROSTER_KEY"},
		{"key without cert", map[string]string{"ROSTER_KEY": "k.pem"}, "ROSTER_CERT"},
		{"password without username", map[string]string{"ROSTER_PASSWORD": "pw"}, "ROSTER_USERNAME"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fxmodule.ConfigFromEnv(env(tc.env))
			if !errors.Is(err, fxmodule.ErrInvalidConfig) {
				t.Fatalf("ConfigFromEnv = %+v, %v; want an error wrapping ErrInvalidConfig", got, err)
			}
			if !strings.Contains(err.Error(), tc.wantVar) {
				t.Errorf("error %q does not name %s", err, tc.wantVar)
			}
		})
	}
}
