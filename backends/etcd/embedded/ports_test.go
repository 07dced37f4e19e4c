package embedded

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestWithFreshPortsRetriesAPortTaken(t *testing.T) {
	// A real bind failure, as etcd meets it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, bindErr := net.Listen("tcp", ln.Addr().String())
	if bindErr == nil || !portTaken(bindErr) {
		t.Fatalf("binding a port in use gave %v; want an error portTaken recognises", bindErr)
	}
	unwrapped := fmt.Errorf("embedded: start m1: %v", bindErr) // no %w: etcd's way at times
	if !portTaken(unwrapped) {
		t.Errorf("portTaken(%v) = false, want true", unwrapped)
	}

	calls := 0
	clashTwice := func() (int, error) {
		calls++
		if calls < 3 {
			return 0, unwrapped
		}
		return 42, nil
	}
	if v, err := withFreshPorts(options{}, clashTwice); err != nil || v != 42 || calls != 3 {
		t.Errorf("withFreshPorts = %d, %v after %d calls; want 42, nil after 3", v, err, calls)
	}

	calls = 0
	always := func() (int, error) { calls++; return 0, unwrapped }
	if _, err := withFreshPorts(options{}, always); err == nil || calls != portAttempts {
		t.Errorf("withFreshPorts on a clash every time = %v after %d calls; want the error after %d", err, calls, portAttempts)
	}

	calls = 0
	if _, err := withFreshPorts(options{dataDir: t.TempDir()}, always); err == nil || calls != 1 {
		t.Errorf("withFreshPorts with a data directory: %d calls, want 1 (the directory may hold the failed start)", calls)
	}

	calls = 0
	other := errors.New("no such file")
	if _, err := withFreshPorts(options{}, func() (int, error) { calls++; return 0, other }); !errors.Is(err, other) || calls != 1 {
		t.Errorf("withFreshPorts on another error = %v after %d calls; want it after 1", err, calls)
	}
}
