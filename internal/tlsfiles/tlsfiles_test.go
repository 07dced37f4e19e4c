package tlsfiles_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roster-sd/roster/internal/testing/testcert"
	"github.com/roster-sd/roster/internal/tlsfiles"
)

func TestCheckPairs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		tlsSet        bool
		ca, cert, key string
		want          []string // the error names each; none: no error
	}{
		{"nothing", false, "", "", "", nil},
		{"TLS alone", true, "", "", "", nil},
		{"CA alone", false, "ca.pem", "", "", nil},
		{"certificate and key", false, "", "c.pem", "k.pem", nil},
		{"TLS and CA", true, "ca.pem", "", "", []string{"TLS", "CACertFile"}},
		{"TLS and key", true, "", "", "k.pem", []string{"TLS", "KeyFile"}},
		{"certificate without key", false, "ca.pem", "c.pem", "", []string{"CertFile", "KeyFile"}},
		{"key without certificate", false, "", "", "k.pem", []string{"KeyFile", "CertFile"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tlsfiles.CheckPairs(tc.tlsSet, tc.ca, tc.cert, tc.key)
			if tc.want == nil {
				if err != nil {
					t.Errorf("CheckPairs = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckPairs = nil; want an error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q; want it to name %s", err, want)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	ca := testcert.WriteCA(t)
	cert, key := writePair(t)
	cfg, err := tlsfiles.Load(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
		t.Errorf("Load = MinVersion %x, RootCAs %v, %d certificates; want TLS 1.2, the CA, one certificate",
			cfg.MinVersion, cfg.RootCAs != nil, len(cfg.Certificates))
	}
	cfg, err = tlsfiles.Load("", "", "")
	if err != nil || cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("Load with no file = %+v, %v; want the system's roots, no certificate, TLS 1.2", cfg, err)
	}
}

// A file that cannot be used gives an *Error naming its field.
func TestLoadRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	ca := testcert.WriteCA(t)
	cert, key := writePair(t)
	cases := []struct {
		name          string
		ca, cert, key string
		field         string
	}{
		{"missing CA", missing, "", "", "CACertFile"},
		{"garbage CA", garbage, "", "", "CACertFile"},
		{"certificate without key", ca, cert, "", "CertFile"},
		{"missing certificate", "", missing, key, "CertFile"},
		{"garbage certificate", "", garbage, key, "CertFile"},
		{"garbage key", "", cert, garbage, "CertFile"},
		{"key of another certificate", "", cert, otherKey(t), "CertFile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := tlsfiles.Load(tc.ca, tc.cert, tc.key)
			var fe *tlsfiles.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Load = %v, %v; want a *tlsfiles.Error", cfg, err)
			}
			if fe.Field != tc.field || fe.Reason == "" || err.Error() != tc.field+": "+fe.Reason {
				t.Errorf("Load error = %q (Field %q); want %q: <reason>", err, fe.Field, tc.field)
			}
		})
	}
}

// writePair writes a self-signed client certificate and its key, PEM, and
// returns their files.
func writePair(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "roster test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", marshalKey(t, key))
	return certFile, keyFile
}

// otherKey writes a key that belongs to no certificate and returns its file.
func otherKey(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "other-key.pem")
	writePEM(t, file, "PRIVATE KEY", marshalKey(t, key))
	return file
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
