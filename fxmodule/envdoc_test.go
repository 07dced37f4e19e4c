package fxmodule_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestConfigurationDocListsTheModuleVariables checks docs/configuration.md's
// table of the fx module's own variables against the Env constants of
// config.go: every one is listed, and nothing else is.
func TestConfigurationDocListsTheModuleVariables(t *testing.T) {
	t.Parallel()
	const doc = "../docs/configuration.md"
	text, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(text), "## The fx module's own variables")
	if !ok {
		t.Fatalf("%s has no section on the fx module's own variables", doc)
	}
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `[A-Za-z.]+` \\| `(ROSTER_[A-Z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		listed = append(listed, m[1])
	}

	file, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range spec.Names {
			if !strings.HasPrefix(name.Name, "Env") || i >= len(spec.Values) {
				continue
			}
			if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				declared = append(declared, v)
			}
		}
		return true
	})
	if len(declared) == 0 {
		t.Fatal("config.go declares no Env constant with a literal value")
	}
	for _, v := range declared {
		if !slices.Contains(listed, v) {
			t.Errorf("%s does not list %s", doc, v)
		}
	}
	for _, v := range listed {
		if !slices.Contains(declared, v) {
			t.Errorf("%s lists %s, which package fxmodule does not declare", doc, v)
		}
	}
}
