package embedded

import (
	"net"
	"strings"
	"testing"
)

// TestPortClashNamesEtcd: when the client port is taken, the error names
// the server as what users run (etcd, here for roster dev) and the port,
// not the internal member name "etcdtest".
func TestPortClashNamesEtcd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	s, err := New(WithClientPort(port))
	if err == nil {
		s.Close()
		t.Fatalf("New on a taken port %d succeeded", port)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.Contains(msg, "etcdtest") || !strings.Contains(msg, "start etcd on "+ln.Addr().String()) {
		t.Errorf("error %q; want it to say \"start etcd on %s\" and not name etcdtest", msg, ln.Addr())
	}
}
