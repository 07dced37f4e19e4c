package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// probeRead bounds how long CheckConnection waits, after a TLS handshake,
// for etcd to refuse the client's certificate (with TLS 1.3 a refusal
// arrives after the handshake has completed on the client's side).
const probeRead = 300 * time.Millisecond

// CheckConnection reaches each of cfg's TCP endpoints as the etcd client
// would, plain or over TLS, and says what is wrong with the first one that
// fails, in words: unreachable; TLS handshake failed (a certificate not
// signed by a trusted CA, a wrong name); the client certificate refused;
// plain text sent to an etcd that serves TLS only; or TLS to one that does
// not speak it. etcd's client reports all of these as a deadline; New
// reports them in its error. It returns nil when every endpoint accepts
// the connection (or is a unix socket, which it does not check). It sends
// no credentials and no request.
func CheckConnection(ctx context.Context, cfg Config) error {
	c := cfg.withDefaults()
	c, err := c.loadTLS()
	if err != nil {
		return err
	}
	for _, ep := range c.Endpoints {
		host, ok := tcpHost(ep)
		if !ok {
			continue
		}
		if err := checkEndpointConn(ctx, host, c.TLS, c.DialTimeout); err != nil {
			return fmt.Errorf("etcd at %s %w", host, err)
		}
	}
	return nil
}

// tcpHost returns the host:port of a TCP endpoint.
func tcpHost(ep string) (string, bool) {
	switch endpointScheme(ep) {
	case "":
		return ep, true
	case "http", "https":
		_, rest, _ := strings.Cut(ep, "://")
		host, _, _ := strings.Cut(rest, "/")
		return host, true
	}
	return "", false
}

// checkEndpointConn connects to host as the client would and returns the
// problem, worded to follow "etcd at host".
func checkEndpointConn(ctx context.Context, host string, cfg *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := func() (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			return nil, fmt.Errorf("cannot be reached: %w", err)
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		return conn, nil
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	if cfg == nil {
		_ = conn.Close()
		// Does it answer a TLS handshake? Then it serves TLS only, and
		// the client's plain text goes unanswered.
		conn, err := dial()
		if err != nil {
			return err
		}
		defer conn.Close()
		probe := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // only asks whether the server speaks TLS; nothing is sent over it
		err = probe.HandshakeContext(ctx)
		var alert tls.AlertError
		if err == nil || errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls") {
			return errors.New("serves TLS only, and the connection is plain text: give https:// endpoints and its CA (TLS, CACertFile)")
		}
		return nil
	}
	defer conn.Close()
	tc := cfg.Clone()
	if tc.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			tc.ServerName = h
		}
	}
	if len(tc.NextProtos) == 0 {
		tc.NextProtos = []string{"h2"}
	}
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		var rec tls.RecordHeaderError
		if errors.As(err, &rec) {
			return errors.New("does not speak TLS, and TLS is set: give http:// endpoints without TLS settings, or check the port")
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return errors.New("closed the connection at the TLS handshake, as an etcd that does not speak TLS does: give http:// endpoints without TLS settings, or check the port")
		}
		var alert tls.AlertError
		if errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls") {
			return fmt.Errorf("refused the TLS connection: %w", err)
		}
		return fmt.Errorf("TLS handshake failed: %w", err)
	}
	// A refused client certificate shows on the first read (TLS 1.3).
	_ = tconn.SetReadDeadline(time.Now().Add(probeRead))
	var one [1]byte
	if _, err := tconn.Read(one[:]); err != nil && strings.Contains(err.Error(), "remote error: tls") {
		return fmt.Errorf("refused the TLS connection: %w", err)
	}
	return nil
}

// connectError returns err, from creating the client (which logs in when
// credentials are set), with what CheckConnection finds when err is a
// deadline: the client gives no reason.
func connectError(cfg Config, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if problem := CheckConnection(ctx, cfg); problem != nil {
		return fmt.Errorf("%w (%w)", problem, err)
	}
	return err
}
