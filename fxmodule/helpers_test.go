package fxmodule_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/fxmodule"
	"github.com/roster-sd/roster/internal/testlog"
	"github.com/roster-sd/roster/retry"
)

// testRetry is a fast retry policy for tests.
func testRetry() retry.Policy {
	return retry.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
}

// etcdConfig configures the module for srv, under a prefix of the test's
// own.
func etcdConfig(t *testing.T, srv *etcdtest.Server) fxmodule.Config {
	return fxmodule.Config{
		Etcd: etcd.Config{
			Endpoints: srv.Endpoints(),
			Prefix:    testPrefix(t),
			TTL:       5 * time.Second,
		},
		Timeout: 2 * time.Second,
		Retry:   testRetry(),
	}
}

func testPrefix(t *testing.T) string {
	r := strings.NewReplacer("/", "_", " ", "_")
	return "/fxmodule-test/" + r.Replace(t.Name())
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var payments = discovery.Instance{Service: "payments", ID: "p-1", Address: "127.0.0.1:8080"}

// testLogger routes logs to t.Log until the test ends, under the name
// "app".
func testLogger(t testing.TB) hclog.Logger { return testlog.New(t).ResetNamed("app") }

// waitState reads sub until key reaches want, and returns that status.
func waitState(t *testing.T, sub *discovery.StatusSubscription, key discovery.Key, want discovery.State, d time.Duration) discovery.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var seen []string
	for {
		st, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s to be %v: %v (saw %v)", key, want, err, seen)
		}
		if st.Instance.Key() != key {
			continue
		}
		seen = append(seen, st.State.String())
		if st.State == want {
			return st
		}
	}
}

// writeCACert writes a self-signed CA certificate (PEM) to a file of the
// test's own and returns its path: a valid CACert for configurations that
// must be rejected before any certificate is used.
func writeCACert(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fxmodule test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
