package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
)

// TestLsAndUIOnAnyOperatorView: ls and the web view use the backend's
// discovery.OperatorView alone, so they work on a backend that is neither
// etcd nor NATS (here the memory backend, as a user's backend would be):
// ls lists its services and its instances with their condition, reason,
// weight and zone; the web view shows them, and an instance registered
// while the page is open.
func TestLsAndUIOnAnyOperatorView(t *testing.T) {
	t.Parallel()
	b, err := memory.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	p1 := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.1:8080"}
	p2 := discovery.Instance{Service: "payments", ID: "p-2", Address: "10.0.0.2:8080",
		Condition: discovery.ConditionDraining, Reason: "deploy 42", Weight: 30, Zone: "eu-west-1a"}
	for _, in := range []discovery.Instance{p1, p2} {
		if err := b.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut}
	same := func(err error) error { return err }

	if err := a.lsServices(ctx, b, false, same); err != nil || out.String() != "SERVICE   INSTANCES\npayments  2\n" {
		t.Errorf("ls: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := a.lsInstances(ctx, b, "payments", false, same); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.Contains(lines[2], `draining "deploy 42"`) || !strings.Contains(lines[2], "30") || !strings.Contains(lines[2], "eu-west-1a") {
		t.Errorf("ls payments:\n%s", out.String())
	}
	out.Reset()
	if err := a.lsInstances(ctx, b, "orders", false, same); err != nil || out.String() != "no instances of orders in memory\n" {
		t.Errorf("ls orders: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := a.lsInstances(ctx, b, "payments", true, same); err != nil ||
		!strings.Contains(out.String(), `"condition": "draining"`) || !strings.Contains(out.String(), `"ttl_seconds": null`) {
		t.Errorf("ls payments -o json: %v\n%s", err, out.String())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uctx, ucancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.serveUI(uctx, ln, b, "memory", time.Second, hclog.NewNullLogger(), nil) }()
	defer func() {
		ucancel()
		if err := <-served; err != nil {
			t.Errorf("serveUI: %v", err)
		}
	}()
	url := "http://" + ln.Addr().String() + "/"
	eventsHolding(t, url, `"registry":"memory","status":{"loaded":true,"reachable":true}`,
		`{"id":"p-1","address":"10.0.0.1:8080","metadata":[],"weight":100}`,
		`{"id":"p-2","address":"10.0.0.2:8080","metadata":[],"condition":"draining","reason":"deploy 42","weight":30,"zone":"eu-west-1a"}`)
	if err := b.Register(ctx, discovery.Instance{Service: "orders", ID: "o-1", Address: "10.0.1.1:80"}); err != nil {
		t.Fatal(err)
	}
	eventsHolding(t, url, `"name":"orders","instances":[{"id":"o-1"`)
}
