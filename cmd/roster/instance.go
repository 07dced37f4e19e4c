package main

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/roster-sd/roster/discovery"
)

// checkName validates a service name or an instance ID given as what (a
// flag such as "--service", or an argument) for the Instance field field.
func checkName(what, field, value string) error {
	if value == "" {
		return inputErrorf("%s is required", what)
	}
	if err := discovery.ValidateName(field, value); err != nil {
		return fieldInputError(what, value, err)
	}
	return nil
}

// fieldInputError turns a validation error of discovery into an inputError
// that names the flag (or argument) what and the field.
func fieldInputError(what, value string, err error) error {
	var fe *discovery.FieldError
	if errors.As(err, &fe) {
		return inputErrorf("invalid %s %q: %s %s", what, value, fe.Field, fe.Reason)
	}
	return inputErrorf("invalid %s %q: %v", what, value, err)
}

// formatMeta renders metadata as k=v pairs sorted by key and joined by
// commas, or "" when there is none.
func formatMeta(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(m[k])
	}
	return b.String()
}

// describe is one instance as watch prints it: "id address k=v,...".
func describe(in discovery.Instance) string {
	s := in.ID + " " + in.Address
	if m := formatMeta(in.Metadata); m != "" {
		s += " " + m
	}
	return s
}
