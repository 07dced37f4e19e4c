package nats_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/retry"
)

func TestNewRejectsAnInvalidConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   nats.Config
		field string // named in the error
	}{
		{"empty endpoint", nats.Config{Endpoints: []string{" "}}, "Endpoints[0]"},
		{"two URLs in one endpoint", nats.Config{Endpoints: []string{"nats://a:4222,nats://b:4222"}}, "Endpoints[0]"},
		{"bucket with a dot", nats.Config{Bucket: "ros.ter"}, "Bucket"},
		{"bucket with a wildcard", nats.Config{Bucket: "ros*"}, "Bucket"},
		{"replicas", nats.Config{Replicas: 6}, "Replicas"},
		{"TTL under a second", nats.Config{TTL: 500 * time.Millisecond}, "TTL"},
		{"TTL not whole seconds", nats.Config{TTL: 1500 * time.Millisecond}, "TTL"},
		{"negative request timeout", nats.Config{RequestTimeout: -1}, "RequestTimeout"},
		{"negative reconnect delay", nats.Config{ReconnectDelay: -1}, "ReconnectDelay"},
		{"password without user", nats.Config{Password: "x"}, "Password"},
		{"user and token", nats.Config{Username: "u", Token: "t"}, "Token"},
		{"retry policy", nats.Config{Retry: retry.Policy{Base: -1}}, "Retry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := nats.New(tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded; want ErrInvalidConfig")
			}
			if !errors.Is(err, nats.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("New = %v; want an error wrapping ErrInvalidConfig naming %s", err, tc.field)
			}
		})
	}
}
