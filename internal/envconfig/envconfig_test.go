package envconfig_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/internal/envconfig"
)

const secret = "hunter2"

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) { v, ok := env[name]; return v, ok }
}

// checkEndpoint and checkTTL stand for a backend's checks.
func checkEndpoint(ep string) error {
	if !strings.Contains(ep, ":") || strings.Contains(ep, "@") {
		return errors.New("want host:port")
	}
	return nil
}

func checkTTL(d time.Duration) error {
	if d%time.Second != 0 {
		return errors.New("want whole seconds")
	}
	return nil
}

func readCommon(env map[string]string) (envconfig.Common, error) {
	return envconfig.ReadCommon(lookupIn(env), "host:port pairs", checkEndpoint, checkTTL)
}

func TestReadCommon(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		want envconfig.Common
	}{
		{"nothing", nil, envconfig.Common{}},
		{"empty values", map[string]string{backends.EnvEndpoints: " ", backends.EnvTTL: "", backends.EnvPassword: ""}, envconfig.Common{}},
		{"every variable", map[string]string{
			backends.EnvEndpoints: " a:1 ,b:2",
			backends.EnvTTL:       "30s",
			backends.EnvTimeout:   " 2s ",
			backends.EnvCACert:    " ca.pem ",
			backends.EnvCert:      "c.pem",
			backends.EnvKey:       "k.pem",
			backends.EnvUsername:  " svc ",
			backends.EnvPassword:  " pass word ", // taken as it is
		}, envconfig.Common{
			Endpoints:  []string{"a:1", "b:2"},
			TTL:        30 * time.Second,
			Timeout:    2 * time.Second,
			CACertFile: "ca.pem",
			CertFile:   "c.pem",
			KeyFile:    "k.pem",
			Username:   "svc",
			Password:   " pass word ",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readCommon(tc.env)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ReadCommon = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// Every error names the variable, and none shows a password.
func TestReadCommonRejects(t *testing.T) {
	t.Parallel()
	withSecret := func(env map[string]string) map[string]string {
		env[backends.EnvUsername] = "svc"
		env[backends.EnvPassword] = secret
		return env
	}
	cases := []struct {
		name string
		env  map[string]string
		want []string // the error must contain each
	}{
		{"empty endpoint", map[string]string{backends.EnvEndpoints: "a:1,,b:2"},
			[]string{backends.EnvEndpoints, "empty endpoint at position 2", "want host:port pairs"}},
		{"endpoint the backend refuses", map[string]string{backends.EnvEndpoints: "a:1, b"},
			[]string{backends.EnvEndpoints, `endpoint "b": want host:port`}},
		{"TTL not a duration", map[string]string{backends.EnvTTL: "15"}, []string{backends.EnvTTL, `"15"`}},
		{"TTL negative", map[string]string{backends.EnvTTL: "-5s"}, []string{backends.EnvTTL, "positive"}},
		{"TTL the backend refuses", map[string]string{backends.EnvTTL: "1500ms"}, []string{backends.EnvTTL, "want whole seconds"}},
		{"timeout not a duration", withSecret(map[string]string{backends.EnvTimeout: "soon"}), []string{backends.EnvTimeout, `"soon"`}},
		{"timeout zero", map[string]string{backends.EnvTimeout: "0s"}, []string{backends.EnvTimeout, "positive"}},
		{"cert without key", withSecret(map[string]string{backends.EnvCert: "c.pem"}), []string{backends.EnvKey, backends.EnvCert}},
		{"key without cert", map[string]string{backends.EnvKey: "k.pem"}, []string{backends.EnvCert, backends.EnvKey}},
		{"password without user", map[string]string{backends.EnvPassword: secret}, []string{backends.EnvUsername, backends.EnvPassword}},
		{"password of spaces without user", map[string]string{backends.EnvPassword: " "}, []string{backends.EnvUsername, backends.EnvPassword}},
		// A URL may carry a user and password, or a token, before its host.
		{"empty endpoint beside one with a password", map[string]string{backends.EnvEndpoints: "a:1,,svc:" + secret + "@b:1"},
			[]string{backends.EnvEndpoints, "empty endpoint at position 2"}},
		{"endpoint with a password refused", map[string]string{backends.EnvEndpoints: "svc:" + secret + "@b"},
			[]string{backends.EnvEndpoints, "want host:port"}},
		{"endpoint with a token refused", map[string]string{backends.EnvEndpoints: "a:1," + secret + "@b"},
			[]string{backends.EnvEndpoints, "want host:port"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readCommon(tc.env)
			if err == nil {
				t.Fatalf("ReadCommon = %+v; want an error", got)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q; want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	r := envconfig.NewReader(lookupIn(map[string]string{"S": "  v  ", "D": " 1m ", "L": "x, y"}))
	if got := r.String("S"); got != "v" {
		t.Errorf("String = %q; want %q", got, "v")
	}
	if got := r.Raw("S"); got != "  v  " {
		t.Errorf("Raw = %q; want %q", got, "  v  ")
	}
	if got := r.String("unset"); got != "" {
		t.Errorf("String of an unset variable = %q; want empty", got)
	}
	if got, err := r.Duration("D"); got != time.Minute || err != nil {
		t.Errorf("Duration = %v, %v; want 1m", got, err)
	}
	if got, err := r.Duration("unset"); got != 0 || err != nil {
		t.Errorf("Duration of an unset variable = %v, %v; want 0, nil", got, err)
	}
	accept := func(string) error { return nil }
	if got, err := r.List("L", "item", "items", accept); err != nil || !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Errorf("List = %q, %v; want [x y]", got, err)
	}
	if got, err := r.List("unset", "item", "items", accept); err != nil || got != nil {
		t.Errorf("List of an unset variable = %q, %v; want nil, nil", got, err)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", ""},
		{"a:1", "a:1"},
		{"nats://a:4222,tls://b:4222", "nats://a:4222,tls://b:4222"},
		{"nats://svc:" + secret + "@a:4222", "nats://redacted@a:4222"},
		{"nats://" + secret + "@a:4222", "nats://redacted@a:4222"},
		{"svc:" + secret + "@a:4222", "redacted@a:4222"},
		{"nats://svc:p@ss" + secret + "@a:4222,nats://b:4222", "nats://redacted@a:4222,nats://b:4222"},
	}
	for _, tc := range cases {
		if got := envconfig.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// TestPasswordsWithSeparatorsNotShown: a password in a URL may hold a
// comma (and, for NATS, '/', '?', '#'). A list is split at commas, so a
// piece of such a URL is not a URL of its own and may hold no '@': no
// error or redacted form shows any part of the password.
func TestPasswordsWithSeparatorsNotShown(t *testing.T) {
	t.Parallel()
	const pw = "s3cr,et/p?w#d"
	redactions := []struct{ in, want string }{
		{"http://u:" + pw + "@127.0.0.1:1", "http://redacted@127.0.0.1:1"},
		{"nats://u:" + pw + "@h:4222", "nats://redacted@h:4222"},
		{"nats://" + pw + "@h:4222", "nats://redacted@h:4222"},
		{"u:" + pw + "@h:4222", "redacted@h:4222"},
		{"nats://u:" + pw + "@h1:4222,nats://h2:4222", "nats://redacted@h1:4222,nats://h2:4222"},
		{"nats://h0:4222,nats://u:" + pw + "@h1:4222", "nats://redacted@h1:4222"},
		{"u:s3cr://et@h:4222", "redacted@h:4222"},
		{"nats://u:s3cr://et@h:4222", "nats://redacted@h:4222"},
	}
	for _, c := range redactions {
		if got := envconfig.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q; want %q", c.in, got, c.want)
		}
	}
	for _, eps := range []string{
		"http://u:" + pw + "@127.0.0.1:1",
		"a:1,http://u:" + pw + "@127.0.0.1:1",
		"u:" + pw + "@h:1",
		"nats://u:" + pw + "@h:4222",
	} {
		for _, check := range []func(string) error{
			checkEndpoint,
			func(string) error { return errors.New("refused") }, // the first piece
		} {
			_, err := envconfig.NewReader(lookupIn(map[string]string{backends.EnvEndpoints: eps})).List(backends.EnvEndpoints, "endpoint", "URLs", check)
			if err == nil {
				t.Errorf("List of %s = %q accepted", backends.EnvEndpoints, eps)
				continue
			}
			t.Logf("%s: %v", eps, err)
			if strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "w#d") {
				t.Errorf("error %q shows part of the password", err)
			}
		}
	}
}
