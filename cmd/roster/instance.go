package main

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

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

// safe returns s as it may be printed on a terminal: unchanged when every
// rune is printable and none of space, '"', '\\', ',' or '=' (which
// separate the fields of ls and watch), or else quoted with Go's escapes
// (strconv.Quote), so that a value written by anyone who may write under
// the prefix cannot carry terminal escape sequences, newlines that forge
// lines of output, or Unicode controls such as U+202E that reorder them.
// Every field that came from the registry goes through it.
func safe(s string) string {
	for _, r := range s {
		if r == ' ' || r == '"' || r == '\\' || r == ',' || r == '=' || r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// escapeUnprintable returns s with every rune that is not printable
// replaced by its Go escape (\x1b, \n, \u202e), without quoting the rest:
// for messages, such as a validation error, that may quote what someone
// wrote to etcd.
func escapeUnprintable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r != utf8.RuneError && unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r) // '\x1b'
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

// formatMeta renders metadata as k=v pairs sorted by key and joined by
// commas, each key and value through safe, or "" when there is none.
func formatMeta(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(safe(k))
		b.WriteByte('=')
		b.WriteString(safe(m[k]))
	}
	return b.String()
}

// describe is one instance as watch prints it: "id address k=v,...", each
// field through safe.
func describe(in discovery.Instance) string {
	s := safe(in.ID) + " " + safe(in.Address)
	if m := formatMeta(in.Metadata); m != "" {
		s += " " + m
	}
	var extra []string
	if in.Condition != discovery.ConditionServing || in.Reason != "" {
		extra = append(extra, conditionText(in.Condition, in.Reason))
	}
	if in.Weight != 0 {
		extra = append(extra, "weight="+strconv.Itoa(in.Weight))
	}
	if in.Zone != "" {
		extra = append(extra, "zone="+safe(in.Zone))
	}
	if len(extra) > 0 {
		s += " [" + strings.Join(extra, " ") + "]"
	}
	return s
}

// conditionText renders a condition and its reason: "draining" or
// `not_ready "database unreachable"`, the reason always quoted.
func conditionText(c discovery.Condition, reason string) string {
	if reason == "" {
		return c.String()
	}
	return c.String() + " " + strconv.Quote(reason)
}
