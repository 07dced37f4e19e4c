package backends_test

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

// TestConfigurationDocListsEveryVariable: the one table of ROSTER_*
// variables, in docs/configuration.md, lists exactly the variables this
// package names (its Env* constants), each once.
func TestConfigurationDocListsEveryVariable(t *testing.T) {
	const doc = "../docs/configuration.md"
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(ROSTER_[A-Z_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		if slices.Contains(listed, m[1]) {
			t.Errorf("%s lists %s twice", doc, m[1])
		}
		listed = append(listed, m[1])
	}

	consts := envConstants(t, "backends.go")
	if len(consts) == 0 {
		t.Fatal("backends.go declares no Env* constant")
	}
	for name, v := range consts {
		if !slices.Contains(listed, v) {
			t.Errorf("%s does not list %s (backends.%s)", doc, v, name)
		}
	}
	for _, v := range listed {
		found := false
		for _, c := range consts {
			found = found || c == v
		}
		if !found {
			t.Errorf("%s lists %s, which is no constant of package backends", doc, v)
		}
	}
}

// envConstants returns the string constants named Env* declared in file,
// by name.
func envConstants(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Env") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: %s is not a string literal", file, name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				consts[name.Name] = v
			}
		}
	}
	return consts
}
