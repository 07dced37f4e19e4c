package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// configurationDoc is the one list of the ROSTER_* variables.
const configurationDoc = "../../docs/configuration.md"

// TestDocumentedVariables: the table of ROSTER_* variables in
// docs/configuration.md names every variable the command line reads, and
// no other, and each flag it gives a variable is a flag of roster's.
func TestDocumentedVariables(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `(ROSTER_[A-Z_]+)` \\| ([^|]*) \\|").FindAllStringSubmatch(string(doc), -1)
	if len(rows) == 0 {
		t.Fatalf("%s has no table of ROSTER_ variables", configurationDoc)
	}
	var named []string
	flags := allFlags(newRootCmd(io.Discard, io.Discard))
	for _, row := range rows {
		named = append(named, row[1])
		for _, f := range regexp.MustCompile("`(--[a-z-]+)`").FindAllStringSubmatch(row[2], -1) {
			if !slices.Contains(flags, strings.TrimPrefix(f[1], "--")) {
				t.Errorf("%s gives %s the flag %s, which roster does not have", configurationDoc, row[1], f[1])
			}
		}
	}
	honoured := append(connectionVars(), envOnly...)
	for _, v := range honoured {
		if !slices.Contains(named, v) {
			t.Errorf("%s does not name %s, which the command line reads", configurationDoc, v)
		}
	}
	for _, v := range named {
		if !slices.Contains(honoured, v) {
			t.Errorf("%s names %s, which the command line does not read", configurationDoc, v)
		}
	}
}

// allFlags returns the names of every flag of cmd and its subcommands.
func allFlags(cmd *cobra.Command) []string {
	var names []string
	add := func(f *pflag.Flag) { names = append(names, f.Name) }
	cmd.Flags().VisitAll(add)
	cmd.PersistentFlags().VisitAll(add)
	for _, sub := range cmd.Commands() {
		names = append(names, allFlags(sub)...)
	}
	return names
}

// TestREADMEQuickstartParses: every roster command line of the top-level
// README's quickstart names a command of roster's, with flags it has.
func TestREADMEQuickstartParses(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## The command line in ten lines\n\n```sh\n(.*?)\n```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no quickstart block under \"## The command line in ten lines\"")
	}
	var seen []string
	for _, line := range strings.Split(string(m[1]), "\n") {
		line, _, _ = strings.Cut(line, "#")
		args := strings.Fields(line)
		if len(args) == 0 || args[0] != "roster" {
			continue
		}
		root := newRootCmd(io.Discard, io.Discard)
		cmd, rest, err := root.Find(args[1:])
		if err != nil || cmd == root {
			t.Errorf("README quickstart: %q names no roster command: %v", line, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("README quickstart: %q: %v", line, err)
		}
		seen = append(seen, cmd.Name())
	}
	for _, want := range []string{"dev", "register", "ls", "watch", "ui"} {
		if !slices.Contains(seen, want) {
			t.Errorf("README quickstart lacks roster %s", want)
		}
	}
}

// TestREADMEStaysShort: the README is the pitch, the two commands, the
// tour and the package table; everything else goes to a page of docs/
// linked from it. A README that grows past 250 lines has become a manual
// again.
func TestREADMEStaysShort(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(readme, []byte("\n")); n >= 250 {
		t.Errorf("README.md has %d lines; keep it under 250 and move the rest to docs/", n)
	}
}
