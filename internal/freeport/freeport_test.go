package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/roster-sd/roster/internal/freeport"
)

func TestReserveGivesDistinctPortsThatCanBeBound(t *testing.T) {
	ports, err := freeport.Reserve(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p <= 0 {
			t.Fatalf("ports %v: want 5 distinct positive ports", ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free after Reserve: %v", p, err)
		}
		ln.Close()
	}
}

func TestReservePicksBelowTheEphemeralRange(t *testing.T) {
	ports, err := freeport.Reserve(20)
	if err != nil {
		t.Fatal(err)
	}
	low := freeport.EphemeralLow()
	for _, p := range ports {
		if p >= low {
			t.Errorf("port %d is in the kernel's ephemeral range (from %d), where an outgoing connection may take it while its server is stopped", p, low)
		}
	}
}
