package faultproxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/roster-sd/roster/internal/testing/testwait"
)

// A partitioned link must not pile up connections while clients redial:
// a held connection whose client gives up is closed at once, none reaches
// upstream while held, and one still open when the hold ends goes through
// with what its client sent.
func TestForwarderHoldsNewConnectionsUntilRelease(t *testing.T) {
	t.Parallel()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	f, err := newForwarder(target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	f.holdNew()

	for range 20 {
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("given up")); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	kept, err := net.Dial("tcp", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if _, err := kept.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}

	// Accepted in the order dialled: once kept is held, the others were
	// accepted before it, and they are gone once it is the only one held.
	// (One held connection is not enough: it may be one that gave up and
	// is not closed yet, with kept still to be accepted.)
	testwait.Until(t, 5*time.Second, "kept is the one connection held", func() bool { return f.holdsOnly(kept) })
	// A held connection is never dialled upstream, so this is exact.
	if n := len(accepted); n != 0 {
		t.Fatalf("upstream accepted %d connections while held", n)
	}

	f.release()
	var up net.Conn
	select {
	case up = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the kept connection did not reach upstream after release")
	}
	defer up.Close()
	up.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len("hello"))
	if _, err := io.ReadFull(up, got); err != nil || string(got) != "hello" {
		t.Fatalf("upstream read %q, %v; want what the client sent while held", got, err)
	}
	// And the link works both ways.
	if _, err := up.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	kept.SetReadDeadline(time.Now().Add(5 * time.Second))
	got = make([]byte, len("back"))
	if _, err := io.ReadFull(kept, got); err != nil || string(got) != "back" {
		t.Fatalf("client read %q, %v", got, err)
	}
	f.mu.Lock()
	held := len(f.held)
	f.mu.Unlock()
	if held != 0 {
		t.Fatalf("%d connections still held after release", held)
	}
}

// holdsOnly reports whether the one connection f holds is the one whose
// client end is c.
func (f *forwarder) holdsOnly(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h := range f.held {
		return len(f.held) == 1 && h.RemoteAddr().String() == c.LocalAddr().String()
	}
	return false
}
