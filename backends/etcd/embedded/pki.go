package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// clientCommonName is the subject common name of the generated client
// certificate.
const clientCommonName = "roster-client"

// pki is the TLS material generated for one Server or Cluster: a CA, a
// server certificate and a client certificate, in memory and as PEM files in
// dir.
type pki struct {
	dir string

	caFile, serverCertFile, serverKeyFile, clientCertFile, clientKeyFile string

	caPool     *x509.CertPool
	clientCert tls.Certificate
}

// newPKI generates the CA and certificates and writes them to a fresh
// temporary directory, which the caller removes when done.
func newPKI() (_ *pki, err error) {
	dir, err := os.MkdirTemp("", "etcdtest-tls-")
	if err != nil {
		return nil, fmt.Errorf("embedded: create TLS directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()

	now := time.Now()
	notBefore, notAfter := now.Add(-time.Hour), now.Add(10*365*24*time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("embedded: generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "etcdtest CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("embedded: create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("embedded: parse CA certificate: %w", err)
	}

	// The server certificate is also usable as a client certificate:
	// etcd's gRPC gateway dials the gRPC server with it.
	serverTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "etcdtest server"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	// The client certificate has no subject alternative names: etcd
	// checks a client certificate's SANs against the connection's remote
	// address when there are some, and a Proxy in between would fail that.
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: clientCommonName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}

	p := &pki{
		dir:            dir,
		caFile:         filepath.Join(dir, "ca.pem"),
		serverCertFile: filepath.Join(dir, "server.pem"),
		serverKeyFile:  filepath.Join(dir, "server-key.pem"),
		clientCertFile: filepath.Join(dir, "client.pem"),
		clientKeyFile:  filepath.Join(dir, "client-key.pem"),
		caPool:         x509.NewCertPool(),
	}
	p.caPool.AddCert(caCert)
	if err := writePEM(p.caFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if _, _, err := issue(serverTmpl, caCert, caKey, p.serverCertFile, p.serverKeyFile); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := issue(clientTmpl, caCert, caKey, p.clientCertFile, p.clientKeyFile)
	if err != nil {
		return nil, err
	}
	if p.clientCert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("embedded: load client certificate: %w", err)
	}
	return p, nil
}

// issue creates a key and a certificate signed by the CA from tmpl, writes
// both as PEM files and returns their PEM bytes.
func issue(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: generate key for %q: %w", tmpl.Subject.CommonName, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: marshal key for %q: %w", tmpl.Subject.CommonName, err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("embedded: write certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("embedded: write key: %w", err)
	}
	return certPEM, keyPEM, nil
}

func writePEM(file, typ string, der []byte) error {
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("embedded: write %s: %w", filepath.Base(file), err)
	}
	return nil
}

// serverTLSInfo is etcd's client-listener TLS configuration: the server
// certificate, and client certificates required and checked against the CA.
func (p *pki) serverTLSInfo() transport.TLSInfo {
	return transport.TLSInfo{
		CertFile:       p.serverCertFile,
		KeyFile:        p.serverKeyFile,
		TrustedCAFile:  p.caFile,
		ClientCertAuth: true,
	}
}

// clientTLSConfig returns a new client-side TLS configuration that trusts
// the CA and presents the client certificate.
func (p *pki) clientTLSConfig() *tls.Config {
	return &tls.Config{
		RootCAs:      p.caPool,
		Certificates: []tls.Certificate{p.clientCert},
		MinVersion:   tls.VersionTLS12,
	}
}
