package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roster-sd/roster/internal/testing/linebuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestTour runs the tour against an embedded etcd: every function the
// README quotes does what the README says.
func TestTour(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out linebuf.Buffer
	if err := run(ctx, "", &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	linebuf.WantInOrder(t, out.String(),
		"started an embedded etcd at 127.0.0.1:",
		"registered payments/p-1",
		"p-1 10.0.0.7:8080 eu-1",
		"payments/p-1 registered",
		"GET /status: 200 ready: every registration is registered",
		"dialled roster:///payments",
		"payments: 1 instances",
		"payments: 2 instances",
		"payments: 1 instances",
	)
}

// quoted are the files whose "// README:<name>" regions the documents
// quote, and the documents that must quote nothing else as Go.
var quoted = []string{"main.go", "../custombackend/mapbackend/mapbackend_test.go"}

// TestDocumentsQuoteCompiledCode: every Go snippet in the README and the
// docs/ pages is, character for character, a region of a file that is
// compiled and tested (quoted), and every region of main.go is quoted
// somewhere, so that neither drifts from the other.
func TestDocumentsQuoteCompiledCode(t *testing.T) {
	regions := map[string]string{} // text -> file:name
	for _, file := range quoted {
		for name, text := range readRegions(t, file) {
			regions[text] = file + ":" + name
		}
	}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{"../../README.md"}, docs...)
	used := map[string]bool{}
	block := regexp.MustCompile("(?s)\n```go\n(.*?)\n```\n")
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllStringSubmatch(string(b), -1) {
			where, ok := regions[m[1]]
			if !ok {
				t.Errorf("%s has a Go snippet that is no region of %s:\n%s", doc, strings.Join(quoted, " or "), m[1])
				continue
			}
			used[where] = true
		}
	}
	for name := range readRegions(t, "main.go") {
		if !used["main.go:"+name] {
			t.Errorf("region %q of main.go is quoted by no document", name)
		}
	}
	if len(used) == 0 {
		t.Error("the documents quote no region")
	}
}

// readRegions returns the regions of a file: the lines between
// "// README:<name>" and "// README:end", blank lines around trimmed.
func readRegions(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	regions := map[string]string{}
	var name string
	var body []string
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "// README:end"):
			if name == "" {
				t.Fatalf("%s:%d: README:end without a start", file, i+1)
			}
			regions[name] = strings.Trim(strings.Join(body, "\n"), "\n")
			name, body = "", nil
		case strings.HasPrefix(line, "// README:"):
			if name != "" {
				t.Fatalf("%s:%d: region %q not ended", file, i+1, name)
			}
			name = strings.TrimPrefix(line, "// README:")
		case name != "":
			body = append(body, line)
		}
	}
	if name != "" {
		t.Fatalf("%s: region %q not ended", file, name)
	}
	return regions
}
