package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/testing/linebuf"
	"github.com/roster-sd/roster/internal/testing/testcert"
)

// runInProcess runs run with args and returns its exit status and output.
func runInProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage:", "dev", "ls", "watch", "register", "deregister", "--endpoints", "ROSTER_ENDPOINTS", "--timeout",
			"--password string", "visible to other local users in the process list (ps): set $ROSTER_PASSWORD instead"}},
		{nil, []string{"Usage:", "Available Commands:"}},
		{[]string{"dev", "--help"}, []string{"roster dev [flags]", "--port", "--data-dir"}},
		{[]string{"ls", "--help"}, []string{"roster ls [service]", "--output", "ttl_seconds", "--prefix"}},
		{[]string{"watch", "--help"}, []string{"roster watch <service>", "RFC 3339"}},
		{[]string{"register", "--help"}, []string{"--service", "--address", "--id", "--meta", "--ttl", "--cacert"}},
		{[]string{"deregister", "--help"}, []string{"--service", "--id", "not found"}},
		{[]string{"help", "ls"}, []string{"roster ls [service]"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runInProcess(t, c.args...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestUsageErrors: a command line that cannot be parsed gives one error
// line naming the problem, then the command's usage, and exit status 2.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"bogus"}, `unknown command "bogus" for "roster"`},
		{[]string{"lss"}, `did you mean this? ls`},
		{[]string{"ls", "--timeout", "abc"}, `invalid argument "abc" for "--timeout" flag`},
		{[]string{"ls", "a", "b"}, "roster ls takes one service"},
		{[]string{"watch"}, "missing service argument"},
		{[]string{"dev", "--port", "x"}, `"--port"`},
		{[]string{"register", "extra"}, "roster register takes no arguments"},
		{[]string{"register", "--meta"}, "flag needs an argument: --meta"},
		{[]string{"register", "--ttl", "soon"}, `"--ttl"`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runInProcess(t, c.args...)
			if code != exitInput {
				t.Errorf("exit %d; want %d", code, exitInput)
			}
			first, rest, _ := strings.Cut(stderr, "\n")
			if !strings.HasPrefix(first, "roster: ") || !strings.Contains(strings.ToLower(first), strings.ToLower(c.want)) {
				t.Errorf("first stderr line %q; want \"roster: ...%s...\"", first, c.want)
			}
			if !strings.Contains(rest, "Usage:") {
				t.Errorf("no usage after the error:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q; want nothing", stdout)
			}
		})
	}
}

// TestInputErrors: a parsable command line with an invalid value gives
// exactly one line on stderr that names the flag (and the field), exit
// status 2, and never touches etcd.
func TestInputErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := writeCACert(t)
	reg := func(extra ...string) []string {
		return append([]string{"register", "--service", "payments", "--address", "127.0.0.1:8080"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"register without service", []string{"register", "--address", "127.0.0.1:8080"}, "--service is required"},
		{"register without address", []string{"register", "--service", "payments"}, "--address is required"},
		{"bad service", []string{"register", "--service", "pay ments", "--address", "127.0.0.1:8080"}, `invalid --service "pay ments": Service has ' ' at byte 3`},
		{"bad address", []string{"register", "--service", "payments", "--address", "localhost"}, `invalid --address "localhost": Address is not host:port`},
		{"bad port", []string{"register", "--service", "payments", "--address", "127.0.0.1:0"}, `invalid --address "127.0.0.1:0": Address has port "0"`},
		{"bad id", reg("--id", "a/b"), `invalid --id "a/b": ID has '/'`},
		{"meta without =", reg("--meta", "zone"), `invalid --meta "zone": want key=value`},
		{"meta with empty key", reg("--meta", "=a"), `invalid --meta "=a": empty key`},
		{"meta twice", reg("--meta", "zone=a", "--meta", "zone=b"), `invalid --meta: key "zone" given twice`},
		{"meta not printable", reg("--meta", "zo\x01ne=a"), `invalid --meta: Metadata key`},
		{"fractional ttl", reg("--ttl", "1500ms"), "invalid --ttl 1.5s: want a whole number of seconds"},
		{"zero ttl", reg("--ttl", "0s"), "invalid --ttl 0s: want at least 1s"},
		{"deregister without id", []string{"deregister", "--service", "payments"}, "--id is required"},
		{"deregister without service", []string{"deregister", "--id", "p-1"}, "--service is required"},
		{"deregister bad id", []string{"deregister", "--service", "payments", "--id", ".."}, `invalid --id "..": ID must not be ".."`},
		{"ls bad service", []string{"ls", "pay/ments"}, `invalid service argument "pay/ments": Service has '/'`},
		{"watch bad service", []string{"watch", "pay/ments"}, `invalid service argument "pay/ments"`},
		{"ls bad output", []string{"ls", "-o", "yaml"}, `invalid -o/--output "yaml"`},
		{"zero timeout", []string{"ls", "--timeout", "0s"}, "invalid --timeout 0s: want a positive duration"},
		{"no endpoint", []string{"ls", "--endpoints", ""}, "--endpoints has no endpoint"},
		{"bad endpoint", []string{"ls", "--endpoints", "etcd"}, `invalid --endpoints "etcd": want host:port or an http, https, unix or unixs URL`},
		{"bad endpoint scheme", []string{"ls", "--endpoints", "ftp://etcd:21"}, `invalid --endpoints "ftp://etcd:21": scheme ftp://; want http, https, unix or unixs`},
		{"NATS endpoint without --backend", []string{"ls", "--endpoints", "nats://127.0.0.1:4222"},
			`invalid --endpoints "nats://127.0.0.1:4222": scheme nats://; want http, https, unix or unixs (a NATS endpoint: add --backend nats, or set ROSTER_BACKEND=nats)`},
		{"NATS tls endpoint without --backend", []string{"ls", "--endpoints", "TLS://127.0.0.1:4222"}, "(a NATS endpoint: add --backend nats"},
		{"credentials in an endpoint", []string{"ls", "--endpoints", "https://svc:hunter2@etcd:2379"}, `invalid --endpoints "https://redacted@etcd:2379": has credentials in it`},
		{"relative prefix", []string{"ls", "--prefix", "roster"}, `invalid --prefix "roster"`},
		{"prefix with trailing slash", []string{"ls", "--prefix", "/roster/"}, `invalid --prefix "/roster/"`},
		{"prefix with dot segment", []string{"ls", "--prefix", "/roster/../x"}, `invalid --prefix "/roster/../x": has a ".." segment`},
		{"password without user", []string{"ls", "--password", "hunter2"}, "--password is set but --user is empty"},
		{"cert without key", []string{"ls", "--cert", junk}, "--cert is set but --key is empty"},
		{"key without cert", []string{"ls", "--key", junk}, "--key is set but --cert is empty"},
		{"missing cacert", []string{"ls", "--cacert", filepath.Join(dir, "none.pem")}, "invalid --cacert: open "},
		{"junk cacert", []string{"ls", "--cacert", junk}, "invalid --cacert: " + junk + " holds no PEM certificate"},
		{"junk cacert for NATS", []string{"ls", "--backend", "nats", "--cacert", junk}, "invalid --cacert: " + junk + " holds no PEM certificate"},
		{"unknown backend", []string{"ls", "--backend", "consul"}, `invalid --backend "consul": the roster command line supports "etcd" and "nats"`},
		{"etcd flag for NATS", []string{"ls", "--backend", "nats", "--prefix", "/x"}, "--prefix is a setting of the etcd backend, not of nats"},
		{"NATS flag for etcd", []string{"ls", "--bucket", "b"}, "--bucket is a setting of the nats backend, not of etcd"},
		{"etcd endpoint for NATS", []string{"ls", "--backend", "nats", "--endpoints", "http://127.0.0.1:4222"}, `invalid --endpoints "http://127.0.0.1:4222": scheme http://; want nats, tls, ws or wss`},
		{"bad bucket", []string{"ls", "--backend", "nats", "--bucket", "a.b"}, `invalid --bucket "a.b": want letters, digits, '-' and '_' only`},
		{"fractional NATS ttl", []string{"register", "--backend", "nats", "--service", "payments", "--address", "127.0.0.1:8080", "--ttl", "1500ms"}, "invalid --ttl 1.5s: want a whole number of seconds (NATS"},
		{"junk cert", []string{"ls", "--cert", junk, "--key", junk}, "invalid --cert/--key: tls: failed to find any PEM data"},
		{"cacert with an http endpoint", []string{"ls", "--cacert", ca, "--endpoints", "http://127.0.0.1:1"},
			`roster: etcd: invalid config: Endpoints[0] "http://127.0.0.1:1" is a plain-text http:// endpoint but TLS is set`},
		{"cacert with a unix endpoint", []string{"ls", "--cacert", ca, "--endpoints", "unix:///run/etcd.sock"},
			`roster: etcd: invalid config: Endpoints[0] "unix:///run/etcd.sock" is a plain-text unix:// endpoint but TLS is set; use unixs://`},
		{"http and https endpoints", []string{"ls", "--endpoints", "http://127.0.0.1:1,https://127.0.0.1:2", "--user", "ops", "--password", "hunter2"},
			`roster: etcd: invalid config: Endpoints[1] "https://127.0.0.1:2" asks for TLS but Endpoints[0] "http://127.0.0.1:1" does not`},
		{"port out of range", []string{"dev", "--port", "70000"}, "invalid --port 70000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, stdout, stderr := runInProcess(t, c.args...)
			if code != exitInput {
				t.Errorf("exit %d; want %d", code, exitInput)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "roster: ") {
				t.Errorf("stderr %q; want one line \"roster: ...\"", stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q; want it to contain %q", stderr, c.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("stderr %q shows the password", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q; want nothing", stdout)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v; invalid input should be rejected before dialing etcd", took)
			}
		})
	}
}

// parseConnectionFlags parses args as the flags of "roster ls" and loads the
// connection configuration from them and the environment.
func parseConnectionFlags(t *testing.T, args ...string) (etcd.Config, error) {
	t.Helper()
	root := newRootCmd(io.Discard, io.Discard)
	cmd, _, err := root.Find([]string{"ls"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	s, err := loadSettings(cmd.Flags())
	if err == nil && s.backend != "etcd" {
		t.Fatalf("loadSettings chose %q; want etcd", s.backend)
	}
	return s.etcd, err
}

func TestLoadConfig(t *testing.T) {
	// Not parallel: the cases set environment variables.
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want etcd.Config // TLS is compared as nil or not
	}{
		{
			name: "defaults",
			want: etcd.Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/roster/services", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second},
		},
		{
			name: "flags",
			args: []string{"--endpoints", "10.0.0.1:2379, 10.0.0.2:2379", "--endpoints", "http://10.0.0.3:2379", "--prefix", "/tenant-a/services", "--timeout", "2s", "--user", "ops", "--password", "pw"},
			want: etcd.Config{Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379", "http://10.0.0.3:2379"}, Prefix: "/tenant-a/services", DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Username: "ops", Password: "pw"},
		},
		{
			name: "environment",
			env:  map[string]string{"ROSTER_ENDPOINTS": "10.0.0.1:2379,10.0.0.2:2379", "ROSTER_PREFIX": "/b", "ROSTER_TIMEOUT": "3s", "ROSTER_USERNAME": "ops", "ROSTER_PASSWORD": "pw"},
			want: etcd.Config{Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379"}, Prefix: "/b", DialTimeout: 3 * time.Second, RequestTimeout: 3 * time.Second, Username: "ops", Password: "pw"},
		},
		{
			name: "flags win over the environment",
			env:  map[string]string{"ROSTER_ENDPOINTS": "10.0.0.1:2379", "ROSTER_PREFIX": "/env", "ROSTER_TIMEOUT": "3s", "ROSTER_USERNAME": "env-user"},
			args: []string{"--endpoints", "10.0.0.9:2379", "--timeout", "4s", "--user", "flag-user"},
			want: etcd.Config{Endpoints: []string{"10.0.0.9:2379"}, Prefix: "/env", DialTimeout: 4 * time.Second, RequestTimeout: 4 * time.Second, Username: "flag-user"},
		},
		{
			name: "empty variables are unset",
			env:  map[string]string{"ROSTER_ENDPOINTS": "", "ROSTER_TIMEOUT": ""},
			want: etcd.Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/roster/services", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second},
		},
		{
			name: "ROSTER_BACKEND etcd and the TTL",
			env:  map[string]string{"ROSTER_BACKEND": "etcd", "ROSTER_TTL": "7s"},
			want: etcd.Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/roster/services", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, TTL: 7 * time.Second},
		},
		{
			name: "certificate files, a flag beside a variable",
			env:  map[string]string{"ROSTER_CACERT": "/env/ca.pem", "ROSTER_CERT": "/env/c.pem", "ROSTER_KEY": "/env/k.pem"},
			args: []string{"--cert", "/flag/c.pem", "--key", "/flag/k.pem"},
			want: etcd.Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/roster/services", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second,
				CACertFile: "/env/ca.pem", CertFile: "/flag/c.pem", KeyFile: "/flag/k.pem"},
		},
		{
			name: "a flag makes its invalid variable unread",
			env:  map[string]string{"ROSTER_TIMEOUT": "soon", "ROSTER_PASSWORD": "pw"},
			args: []string{"--timeout", "2s", "--user", "ops"},
			want: etcd.Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/roster/services", DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Username: "ops", Password: "pw"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, name := range append([]string{"ROSTER_BACKEND"}, connectionVars()...) {
				t.Setenv(name, "")
				os.Unsetenv(name)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			got, err := parseConnectionFlags(t, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Endpoints, c.want.Endpoints) {
				t.Errorf("Endpoints = %q; want %q", got.Endpoints, c.want.Endpoints)
			}
			if got.TLS != nil {
				t.Errorf("TLS = %v; want nil (etcd.New builds it)", got.TLS)
			}
			type fields struct {
				Prefix, Username, Password       string
				CACertFile, CertFile, KeyFile    string
				DialTimeout, RequestTimeout, TTL time.Duration
			}
			wantTTL := c.want.TTL
			if wantTTL == 0 {
				wantTTL = etcd.DefaultTTL
			}
			g := fields{got.Prefix, got.Username, got.Password, got.CACertFile, got.CertFile, got.KeyFile, got.DialTimeout, got.RequestTimeout, got.TTL}
			w := fields{c.want.Prefix, c.want.Username, c.want.Password, c.want.CACertFile, c.want.CertFile, c.want.KeyFile, c.want.DialTimeout, c.want.RequestTimeout, wantTTL}
			if g != w {
				t.Errorf("config = %+v; want %+v", g, w)
			}
		})
	}
}

// TestEnvErrors: an invalid environment variable is named in the error,
// and the password never appears.
func TestEnvErrors(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ROSTER_TIMEOUT": "abc"}, `ROSTER_TIMEOUT is "abc"; want a Go duration such as 15s or 1m`},
		{map[string]string{"ROSTER_TIMEOUT": "-1s"}, "ROSTER_TIMEOUT is -1s; want a positive duration"},
		{map[string]string{"ROSTER_TTL": "1500ms"}, "ROSTER_TTL is 1.5s; want a whole number of seconds"},
		{map[string]string{"ROSTER_PREFIX": "services"}, `ROSTER_PREFIX "services" must start with '/'`},
		{map[string]string{"ROSTER_ENDPOINTS": "etcd"}, `ROSTER_ENDPOINTS endpoint "etcd": want host:port`},
		{map[string]string{"ROSTER_ENDPOINTS": "ftp://etcd:21"}, `ROSTER_ENDPOINTS endpoint "ftp://etcd:21": scheme ftp://`},
		{map[string]string{"ROSTER_ENDPOINTS": "nats://127.0.0.1:4222"}, `scheme nats://; want http, https, unix or unixs (a NATS endpoint: add --backend nats, or set ROSTER_BACKEND=nats)`},
		{map[string]string{"ROSTER_PASSWORD": "hunter2"}, "ROSTER_PASSWORD is set but --user is empty"},
		{map[string]string{"ROSTER_CERT": "/nonexistent.pem"}, "ROSTER_CERT is set but --key is empty"},
		{map[string]string{"ROSTER_CACERT": "/nonexistent/ca.pem"}, "invalid ROSTER_CACERT: open /nonexistent/ca.pem"},
		{map[string]string{"ROSTER_BACKEND": "consul"}, `invalid ROSTER_BACKEND "consul": the roster command line supports "etcd" and "nats"`},
		{map[string]string{"ROSTER_BACKEND": "memory"}, `invalid ROSTER_BACKEND "memory": the roster command line supports "etcd" and "nats" (a memory registry lives inside one process`},
		{map[string]string{"ROSTER_BACKEND": "nats", "ROSTER_ENDPOINTS": "http://127.0.0.1:4222"}, `ROSTER_ENDPOINTS endpoint "http://127.0.0.1:4222": scheme http://; want nats, tls, ws or wss`},
		{map[string]string{"ROSTER_BACKEND": "nats", "ROSTER_BUCKET": "a.b"}, `ROSTER_BUCKET is "a.b"`},
		{map[string]string{"ROSTER_BACKEND": "nats", "ROSTER_TOKEN": "hunter2", "ROSTER_USERNAME": "u"}, `ROSTER_USERNAME and ROSTER_TOKEN are all set`},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runInProcess(t, "ls")
			if code != exitInput || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want %d and one line with %q", code, stderr, exitInput, c.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("stderr %q shows the password", stderr)
			}
		})
	}
}

// TestNATSAuthExclusionNamesSources: NATS's ways to authenticate exclude
// each other, and the error names each one where it was given: the flag
// when it was, else the variable. The token's value never appears.
func TestNATSAuthExclusionNamesSources(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"two flags", nil, []string{"--creds", "/x.creds", "--nkey-seed", "/x.nk"}, "--creds and --nkey-seed are all set"},
		{"a flag and a variable", map[string]string{"ROSTER_TOKEN": "hunter2"}, []string{"--user", "ops"}, "--user and ROSTER_TOKEN are all set"},
		{"a flag beside the variable it stands for", map[string]string{"ROSTER_USERNAME": "env-user", "ROSTER_NKEY_SEED": "/x.nk"},
			[]string{"--nkey-seed", "/y.nk"}, "ROSTER_USERNAME and --nkey-seed are all set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, name := range append([]string{"ROSTER_BACKEND"}, connectionVars()...) {
				t.Setenv(name, "")
				os.Unsetenv(name)
			}
			t.Setenv("ROSTER_TOKEN", "")
			os.Unsetenv("ROSTER_TOKEN")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runInProcess(t, append([]string{"ls", "--backend", "nats"}, c.args...)...)
			if code != exitInput || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) || stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and one line with %q", code, stdout, stderr, exitInput, c.want)
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("stderr %q shows the token", stderr)
			}
		})
	}
}

// TestTLSAndAuth runs register, ls and deregister in-process against an
// etcd that requires client certificates and a password, configured by
// flags and by environment variables.
func TestTLSAndAuth(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithTLS(), etcdtest.WithAuth("root", "s3cret-pw"))
	ep := srv.Endpoints()[0]
	flags := []string{"--endpoints", ep, "--cacert", srv.CAFile(), "--cert", srv.CertFile(), "--key", srv.KeyFile(),
		"--user", "root", "--password", "s3cret-pw", "--timeout", "3s"}

	stdout, stop := startRegister(t, append([]string{"--meta", "zone=a", "--ttl", "10s"}, flags...)...)
	code, out, errOut := runInProcess(t, append([]string{"ls", "payments"}, flags...)...)
	if code != exitOK || !regexp.MustCompile(`(?m)^p-1\s+127\.0\.0\.1:8080\s+zone=a\s+(10|9|8)$`).MatchString(out) {
		t.Errorf("ls payments: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	stop()
	if !strings.HasSuffix(stdout.String(), "deregistered payments/p-1\n") {
		t.Errorf("register output:\n%s\nwant it to end with deregistered", stdout.String())
	}

	// The same through the environment.
	t.Run("environment", func(t *testing.T) {
		for k, v := range map[string]string{
			"ROSTER_ENDPOINTS": ep, "ROSTER_CACERT": srv.CAFile(), "ROSTER_CERT": srv.CertFile(), "ROSTER_KEY": srv.KeyFile(),
			"ROSTER_USERNAME": "root", "ROSTER_PASSWORD": "s3cret-pw", "ROSTER_TIMEOUT": "3s",
		} {
			t.Setenv(k, v)
		}
		code, out, errOut := runInProcess(t, "ls")
		if code != exitOK || out != "no services under /roster/services\n" {
			t.Errorf("ls: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		code, _, errOut = runInProcess(t, "deregister", "--service", "payments", "--id", "p-1")
		if code != exitFailure || errOut != "roster: payments/p-1 not found (no key /roster/services/payments/p-1)\n" {
			t.Errorf("deregister: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		args := slices.Clone(flags)
		args[slices.Index(args, "s3cret-pw")] = "not-the-pw"
		code, _, errOut := runInProcess(t, append([]string{"ls"}, args...)...)
		if code != exitFailure || !strings.Contains(errOut, "authentication failed") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want 1 and one line about authentication", code, errOut)
		}
		if strings.Contains(errOut, "not-the-pw") {
			t.Errorf("stderr %q shows the password", errOut)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		code, _, errOut := runInProcess(t, "ls", "--endpoints", ep, "--user", "root", "--password", "s3cret-pw", "--timeout", "1s")
		want := "roster: warning: the password is sent to etcd in clear: " + ep + " does not use TLS (give https:// endpoints, or --cacert)\n" +
			"roster: etcd at " + ep + " serves TLS only, and the connection is plain text: give https:// endpoints and its CA (--cacert)\n"
		if code != exitFailure || errOut != want {
			t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, want)
		}
	})
}

// writeCACert writes a valid CA file of the test's own.
func writeCACert(t *testing.T) string { return testcert.WriteCA(t) }

func TestDevPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	code, stdout, stderr := runInProcess(t, "dev", "--port", port)
	want := "roster: cannot serve on 127.0.0.1:" + port + " (is another etcd running? choose another --port)"
	if code != exitFailure || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}
}

// TestPrintChange checks the lines watch prints for a change of set.
func TestPrintChange(t *testing.T) {
	t.Parallel()
	in := func(id, addr string, meta ...string) discovery.Instance {
		m := map[string]string{}
		for _, kv := range meta {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return discovery.Instance{Service: "payments", ID: id, Address: addr, Metadata: m}
	}
	cases := []struct {
		name     string
		old, cur []discovery.Instance
		want     []string // the lines after the header
		count    string
	}{
		{"first, empty", nil, nil, nil, "0 instances"},
		{"first", nil, []discovery.Instance{in("a", "10.0.0.1:1"), in("b", "10.0.0.2:1", "zone=b", "v=2")},
			[]string{"+ a 10.0.0.1:1", "+ b 10.0.0.2:1 v=2,zone=b"}, "2 instances"},
		{"add, change, remove",
			[]discovery.Instance{in("a", "10.0.0.1:1"), in("b", "10.0.0.2:1"), in("c", "10.0.0.3:1", "zone=c")},
			[]discovery.Instance{in("b", "10.0.0.2:1"), in("c", "10.0.0.3:1", "zone=d"), in("d", "10.0.0.4:1")},
			[]string{"- a 10.0.0.1:1", "~ c 10.0.0.3:1 zone=d", "+ d 10.0.0.4:1"}, "3 instances"},
		{"all gone", []discovery.Instance{in("a", "10.0.0.1:1")}, []discovery.Instance{},
			[]string{"- a 10.0.0.1:1"}, "0 instances"},
		{"address changed", []discovery.Instance{in("a", "10.0.0.1:1")}, []discovery.Instance{in("a", "10.0.0.1:2")},
			[]string{"~ a 10.0.0.1:2"}, "1 instance"},
	}
	header := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) payments: `)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			a := &app{stdout: &out, stderr: io.Discard}
			a.printChange("payments", c.old, c.cur, "")
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if !header.MatchString(lines[0]) || !strings.HasSuffix(lines[0], ": "+c.count) {
				t.Errorf("header %q; want \"<RFC 3339 time> payments: %s\"", lines[0], c.count)
			}
			if got := lines[1:]; !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Errorf("lines %q; want %q", got, c.want)
			}
		})
	}
}

// TestLsSkipsInvalid: ls lists what it can and warns about keys under the
// prefix that are not valid instances; an instance without a lease has no
// TTL.
func TestLsSkipsInvalid(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	ctx := context.Background()
	for k, v := range map[string]string{
		"/roster/services/payments/p-1":  `{"service":"payments","id":"p-1","address":"127.0.0.1:8080"}`,
		"/roster/services/payments/bad":  `not json`,
		"/roster/services/payments/x":    `{"service":"payments","id":"y","address":"127.0.0.1:8081"}`,
		"/roster/services/payments/addr": `{"service":"payments","id":"addr","address":"nowhere"}`,
		"/roster/services/payments/":     `{"service":"payments","id":"","address":"127.0.0.1:8090"}`,
		"/roster/services/payments/esc":  `{"service":"payments","id":"esc","address":"\u001b[2K\n+ p-9"}`,
		"/roster/services/odd":           `{}`,
		"/elsewhere/payments/p-9":        `{"service":"payments","id":"p-9","address":"127.0.0.1:8089"}`,
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	ep := srv.Endpoints()[0]

	code, stdout, stderr := runInProcess(t, "ls", "payments", "--endpoints", ep)
	if code != exitOK || !regexp.MustCompile(`^ID\s+ADDRESS\s+METADATA\s+TTL\np-1\s+127\.0\.0\.1:8080\s+-\s+-\n$`).MatchString(stdout) {
		t.Errorf("ls payments: exit %d\nstdout:\n%s", code, stdout)
	}
	for _, want := range []string{
		`roster: warning: skipping key "/roster/services/payments/bad": not a valid instance: invalid character`,
		`roster: warning: skipping key "/roster/services/payments/x": not a valid instance: it holds instance payments/y`,
		`roster: warning: skipping key "/roster/services/payments/addr": not a valid instance: discovery: invalid instance: Address is not host:port`,
		`roster: warning: skipping key "/roster/services/payments/": not a valid instance: discovery: invalid instance: ID must not be empty` + "\n",
		`roster: warning: skipping key "/roster/services/payments/esc": not a valid instance: discovery: invalid instance: Address is not host:port (IPv6 hosts in brackets): address \x1b[2K\n+ p-9: missing port in address` + "\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	code, stdout, _ = runInProcess(t, "ls", "payments", "-o", "json", "--endpoints", ep)
	want := `[
  {
    "service": "payments",
    "id": "p-1",
    "address": "127.0.0.1:8080",
    "ttl_seconds": null
  }
]
`
	if code != exitOK || stdout != want {
		t.Errorf("ls payments -o json: exit %d\n%s\nwant\n%s", code, stdout, want)
	}

	// Keys only: the count is of keys that look like <prefix>/<service>/<id>.
	code, stdout, stderr = runInProcess(t, "ls", "--endpoints", ep)
	if code != exitOK || !regexp.MustCompile(`^SERVICE\s+INSTANCES\npayments\s+5\n$`).MatchString(stdout) ||
		!strings.Contains(stderr, `roster: warning: skipping key "/roster/services/odd": not /roster/services/<service>/<id>`) ||
		!strings.Contains(stderr, `roster: warning: skipping key "/roster/services/payments/": not /roster/services/<service>/<id>`) {
		t.Errorf("ls: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	code, stdout, _ = runInProcess(t, "ls", "--endpoints", ep, "--prefix", "/elsewhere", "-o", "json")
	if want := "[\n  {\n    \"service\": \"payments\",\n    \"instances\": 1\n  }\n]\n"; code != exitOK || stdout != want {
		t.Errorf("ls --prefix /elsewhere: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runInProcess(t, "ls", "--endpoints", ep, "--prefix", "/nothing-here", "-o", "json")
	if code != exitOK || stdout != "[]\n" {
		t.Errorf("ls of an empty prefix: exit %d, %q; want []", code, stdout)
	}
}

// TestSafe: what ls and watch print of a registry field: unchanged when
// it is plain, quoted with Go's escapes when it holds a field separator or
// a rune that is not printable.
func TestSafe(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", ""},
		{"v1.4.2", "v1.4.2"},
		{"zürich", "zürich"},
		{"a b", `"a b"`},
		{"a,b", `"a,b"`},
		{"a=b", `"a=b"`},
		{`"q"`, `"\"q\""`},
		{`C:\dir`, `"C:\\dir"`},
		{"a\nb", `"a\nb"`},
		{"a\tb", `"a\tb"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
		{"\u202eevil", `"\u202eevil"`},
		{"no\u00a0break", `"no\u00a0break"`},
		{"bad\xffbyte", `"bad\xffbyte"`},
	}
	for _, c := range cases {
		if got := safe(c.in); got != c.want {
			t.Errorf("safe(%q) = %s; want %s", c.in, got, c.want)
		}
	}
}

// connectionVars lists the variables the connection flags stand for.
func connectionVars() []string {
	var names []string
	for _, m := range connectionEnv {
		names = append(names, m.env)
	}
	return names
}

// TestTTLFromEnvironment: register takes the lease TTL from ROSTER_TTL
// when --ttl is not given, and --ttl wins over it; the lease etcd granted
// has that TTL.
func TestTTLFromEnvironment(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.Client(t, srv)
	t.Setenv("ROSTER_ENDPOINTS", srv.Endpoints()[0])
	t.Setenv("ROSTER_TTL", "7s")
	cases := []struct {
		name string
		args []string
		want int64
	}{
		{"variable", nil, 7},
		{"flag wins", []string{"--ttl", "9s"}, 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stop := startRegister(t, c.args...)
			line, _, _ := strings.Cut(stdout.String(), "\n")
			hex := strings.TrimSuffix(line[strings.LastIndex(line, " ")+1:], ")")
			id, err := strconv.ParseInt(hex, 16, 64)
			if err != nil {
				t.Fatalf("lease in %q: %v", line, err)
			}
			tctx, tcancel := context.WithTimeout(context.Background(), waitTimeout)
			defer tcancel()
			resp, err := cli.TimeToLive(tctx, clientv3.LeaseID(id))
			if err != nil {
				t.Fatalf("TimeToLive(%x): %v", id, err)
			}
			if resp.GrantedTTL != c.want {
				t.Errorf("lease %x: granted TTL %d; want %d", id, resp.GrantedTTL, c.want)
			}
			stop()
		})
	}
}

// startRegister runs "register --service payments --id p-1 --address
// 127.0.0.1:8080" plus args in-process until stop, once it has printed
// that it registered. stop ends it, waits for it, and checks it exited 0.
func startRegister(t *testing.T, args ...string) (stdout *linebuf.Buffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stdout, stderr := &linebuf.Buffer{}, &linebuf.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080"}, args...), stdout, stderr)
	}()
	stdout.WaitFor(t, "registered payments/p-1 at 127.0.0.1:8080 (lease ", waitTimeout)
	return stdout, func() {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("register exited %d; stderr %q", code, stderr.String())
			}
		case <-time.After(waitTimeout):
			t.Fatal("register did not return after its context ended")
		}
	}
}

// TestRegisterServesHTTP: register --http serves the registration's
// metrics and status while it runs.
func TestRegisterServesHTTP(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Setenv("ROSTER_ENDPOINTS", srv.Endpoints()[0])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &linebuf.Buffer{}, &linebuf.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "payments", "--id", "p-1", "--address", "127.0.0.1:8080",
			"--http", "127.0.0.1:0"}, stdout, stderr)
	}()
	stdout.WaitFor(t, "registered payments/p-1 at 127.0.0.1:8080 (lease ", waitTimeout)
	stderr.WaitFor(t, "serving http://", waitTimeout)
	line := stderr.String()
	base := line[strings.Index(line, "http://"):]
	base = base[:strings.Index(base, "/metrics")]

	httpGet := func(path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Close = true
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	if code, body := httpGet("/status"); code != http.StatusOK || !strings.HasPrefix(body, "ready: every registration is registered\npayments/p-1 at 127.0.0.1:8080: registered since ") {
		t.Errorf("/status: %d\n%s", code, body)
	}
	if code, body := httpGet("/metrics"); code != http.StatusOK ||
		!strings.Contains(body, `roster_registrations{service="payments",state="registered"} 1`+"\n") ||
		!strings.Contains(body, "roster_backend_connected 1\n") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("register exited %d; stderr %q", code, stderr.String())
		}
	case <-time.After(waitTimeout):
		t.Fatal("register did not return after its context ended")
	}
}
