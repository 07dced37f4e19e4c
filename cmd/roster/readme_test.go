package main

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestREADMEVariables: README.md names every variable the command line
// reads, and no other ROSTER_ variable.
func TestREADMEVariables(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	honoured := append(connectionVars(), envOnly...)
	named := regexp.MustCompile(`ROSTER_[A-Z_]+`).FindAllString(string(readme), -1)
	for _, v := range honoured {
		if !slices.Contains(named, v) {
			t.Errorf("README.md does not name %s, which the command line reads", v)
		}
	}
	for _, v := range named {
		if !slices.Contains(honoured, v) {
			t.Errorf("README.md names %s, which the command line does not read", v)
		}
	}
}
