package nats_test

import (
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/testlog"
)

// A password or token sent over a connection without TLS is a warning,
// logged once by New, and a fact a program (the command line) reads
// from CredentialsInClear rather than from the log's text.
func TestCredentialsInClear(t *testing.T) {
	t.Parallel()
	plain := natstest.Start(t, natstest.WithUser("svc", "Zq3secret"))
	token := natstest.Start(t, natstest.WithToken("Zq3token"))
	secure := natstest.Start(t, natstest.WithTLS(), natstest.WithUser("svc", "Zq3secret"))
	none := natstest.Start(t)
	cases := []struct {
		name string
		cfg  func(t *testing.T) nats.Config
		want bool
	}{
		{"password over nats://", func(t *testing.T) nats.Config {
			c := testConfig(t, plain.URL(), "roster")
			c.Username, c.Password = "svc", "Zq3secret"
			return c
		}, true},
		{"password in the URL", func(t *testing.T) nats.Config {
			return testConfig(t, "nats://svc:Zq3secret@"+plain.Addr(), "roster")
		}, true},
		{"token over host:port", func(t *testing.T) nats.Config {
			c := testConfig(t, token.Addr(), "roster")
			c.Token = "Zq3token"
			return c
		}, true},
		{"password over TLS", func(t *testing.T) nats.Config {
			c := testConfig(t, secure.URL(), "roster")
			c.Username, c.Password, c.TLS = "svc", "Zq3secret", secure.ClientTLSConfig()
			return c
		}, false},
		{"no credentials", func(t *testing.T) nats.Config {
			return testConfig(t, none.URL(), "roster")
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			cfg := tc.cfg(t)
			cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.MultiWriter(&logs, testlog.Writer(t)), Level: hclog.Debug})
			if got := cfg.CredentialsInClear(); got != tc.want {
				t.Errorf("Config.CredentialsInClear = %v; want %v", got, tc.want)
			}
			b := newBackend(t, cfg)
			if got := b.CredentialsInClear(); got != tc.want {
				t.Errorf("Backend.CredentialsInClear = %v; want %v", got, tc.want)
			}
			want := 0
			if tc.want {
				want = 1
			}
			if n := strings.Count(logs.String(), nats.CredentialsInClearMessage); n != want {
				t.Errorf("the warning is logged %d times; want %d:\n%s", n, want, logs.String())
			}
			if strings.Contains(logs.String(), "Zq3") {
				t.Errorf("the logs show a secret:\n%s", logs.String())
			}
		})
	}
}
