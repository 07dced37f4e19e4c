package main

import (
	"os"
	"strings"
	"testing"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// TestCommaPasswordNotShown: a password in an endpoint URL that holds a
// comma was split with the list, and the error quoted the first piece
// ("http://u:s3cr"). No error shows any part of it, whether the endpoints
// come from --endpoints or from ROSTER_ENDPOINTS.
func TestCommaPasswordNotShown(t *testing.T) {
	const pw = "s3cr,et#pw"
	cases := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"flag", nil, []string{"ls", "--endpoints", "http://u:" + pw + "@127.0.0.1:1"}},
		{"flag, second endpoint", nil, []string{"ls", "--endpoints", "127.0.0.1:1,http://u:" + pw + "@127.0.0.1:1"}},
		{"flag, https", nil, []string{"ls", "--endpoints", "https://u:" + pw + "@127.0.0.1:1"}},
		{"environment", map[string]string{"ROSTER_ENDPOINTS": "http://u:" + pw + "@127.0.0.1:1"}, []string{"ls"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range connectionVars() {
				t.Setenv(v, "")
				os.Unsetenv(v)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runInProcess(t, append(c.args, "--timeout", "1s")...)
			t.Logf("exit %d, stderr %q", code, stderr)
			if code == exitOK || stdout != "" {
				t.Errorf("exit %d, stdout %q; want a failure", code, stdout)
			}
			if strings.Contains(stderr, "s3cr") || strings.Contains(stderr, "et#pw") {
				t.Errorf("stderr %q shows part of the password", stderr)
			}
		})
	}
}

// TestTLSProblemsNamed: plain text to a TLS-only etcd, and a CA that did
// not sign etcd's certificate, read "did not answer within 2s"; each now
// says what is wrong, on one line.
func TestTLSProblemsNamed(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.WithTLS())
	host := srv.Endpoints()[0]
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"plain text", []string{"ls", "--endpoints", host}, "roster: etcd at " + host + " serves TLS only, and the connection is plain text: give https:// endpoints and its CA (--cacert)\n"},
		{"unknown CA", []string{"ls", "--endpoints", "https://" + host, "--cacert", writeCACert(t)},
			"roster: etcd at " + host + " TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := runRoster(t, nil, append(c.args, "--timeout", "2s")...)
			if r.code != exitFailure || !strings.HasPrefix(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, exitFailure, c.want)
			}
		})
	}
}
