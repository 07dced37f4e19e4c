// Package tlsfiles builds a client TLS configuration from PEM files, the
// way every backend's Config names them (CACertFile, CertFile, KeyFile),
// so that the backends read certificate files alike and say alike which
// one they could not use.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// Error reports a file that could not be used, naming its Config field.
type Error struct {
	// Field is "CACertFile" or "CertFile" (the certificate and its key).
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error returns "<Field>: <Reason>".
func (e *Error) Error() string { return e.Field + ": " + e.Reason }

// CheckPairs checks the file fields against each other and against a TLS
// configuration given as it is (tlsSet), before any file is read. The
// error names the fields.
func CheckPairs(tlsSet bool, caFile, certFile, keyFile string) error {
	files := caFile != "" || certFile != "" || keyFile != ""
	switch {
	case tlsSet && files:
		return errorString("TLS and CACertFile, CertFile or KeyFile are both set; " +
			"TLS is used as it is, so give one or the other")
	case certFile != "" && keyFile == "":
		return errorString("CertFile is set but KeyFile is empty: a client certificate needs its key")
	case certFile == "" && keyFile != "":
		return errorString("KeyFile is set but CertFile is empty: a key needs its client certificate")
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Load returns a TLS configuration (TLS 1.2 at least) that verifies the
// server with the CA bundle in caFile (the system's roots when empty) and
// presents the client certificate in certFile and keyFile (none when
// empty). A file that cannot be used gives an *Error naming its field.
func Load(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, &Error{Field: "CACertFile", Reason: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{Field: "CACertFile", Reason: caFile + " holds no PEM certificate"}
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, &Error{Field: "CertFile", Reason: err.Error()}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
