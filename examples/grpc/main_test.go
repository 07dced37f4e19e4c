package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/internal/testing/linebuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	var stdout, stderr linebuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, nil, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)

	rounds := parseRounds(t, out)
	cases := []struct {
		after string   // the line before the round
		want  []string // the servers that must answer, and no other
	}{
		{"The client dials roster:///greeter", []string{"server-1", "server-2"}},
		{"server-3 serves on", []string{"server-1", "server-2", "server-3"}},
		{"Stopping server-2", []string{"server-1", "server-3"}},
		{"server-2 stopped", []string{"server-1", "server-3"}},
	}
	if len(rounds) != len(cases) {
		t.Fatalf("saw %d rounds of calls; want %d", len(rounds), len(cases))
	}
	for i, tc := range cases {
		r := rounds[i]
		if !strings.Contains(r.after, tc.after) {
			t.Errorf("round %d follows %q; want it after %q", i+1, r.after, tc.after)
		}
		if len(r.servers) != 2*len(tc.want) || !sameSet(r.servers, tc.want) {
			t.Errorf("round %d answered by %v; want each of %v twice", i+1, r.servers, tc.want)
		}
	}
	if !strings.HasSuffix(out, "Done\n") {
		t.Errorf("output does not end with Done")
	}
}

type round struct {
	after   string   // the line before "N calls over M servers:"
	servers []string // who answered each call
}

func parseRounds(t *testing.T, out string) []round {
	t.Helper()
	var rounds []round
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if !strings.Contains(line, " calls over ") {
			continue
		}
		r := round{after: lines[i-1]}
		for _, call := range lines[i+1:] {
			if !strings.HasPrefix(call, "  SayHello -> ") {
				break
			}
			r.servers = append(r.servers, serverOf(strings.Trim(strings.TrimPrefix(call, "  SayHello -> "), `"`)))
		}
		rounds = append(rounds, r)
	}
	return rounds
}
