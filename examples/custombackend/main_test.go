package main

import (
	"bytes"
	"context"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `before start:          inventory = []
after start:           inventory = [inventory/10.0.0.7-8080 at 10.0.0.7:8080 map[zone:eu-1]]
registration status:   inventory/10.0.0.7-8080 registered
after stop:            inventory = []
`
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}
