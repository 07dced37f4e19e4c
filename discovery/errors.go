package discovery

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Sentinel errors. Backends wrap them with %w; callers match them with
// errors.Is.
var (
	// ErrInvalidInstance reports an Instance that fails Validate. The
	// wrapping *FieldError names the field and the reason.
	ErrInvalidInstance = errors.New("discovery: invalid instance")

	// ErrNotRegistered reports an operation on an instance that this
	// Registrar does not hold.
	ErrNotRegistered = errors.New("discovery: instance not registered")

	// ErrClosed reports a call on a Registrar, Resolver, Watcher or status
	// subscription that has been closed or stopped.
	ErrClosed = errors.New("discovery: closed")

	// ErrUnavailable reports that the registry cannot be reached. A
	// Watcher's Next returns an error wrapping it once when its registry
	// becomes unreachable; the Watcher stays usable, keeps its last set, and
	// its next successful Next returns the set again once the registry is
	// back, even if it did not change.
	ErrUnavailable = errors.New("discovery: registry unavailable")

	// ErrConflict reports that another registrar has taken over the same
	// service and ID. The later writer owns the key; the earlier one waits
	// for it to go away and then takes it back.
	ErrConflict = errors.New("discovery: instance owned by another registrar")

	// ErrRemoved reports that the registry no longer holds an instance
	// that a registrar keeps published: its lease or TTL expired, or
	// another client deleted it. The cause of StateLost wraps it; the
	// registrar restores the instance.
	ErrRemoved = errors.New("discovery: instance removed from the registry")
)

// FieldError describes why one field of an Instance is invalid. It wraps
// ErrInvalidInstance. It never includes metadata values, which may be
// confidential, and quotes a string longer than 64 bytes (a metadata key,
// say) as its first bytes and its length.
type FieldError struct {
	// Field is the name of the offending field, such as "Service",
	// "Address" or "Metadata[zone]".
	Field string
	// Reason says what is wrong, in lower case, e.g. "must not be empty".
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s %s", ErrInvalidInstance, e.Field, e.Reason)
}

// Unwrap returns ErrInvalidInstance so errors.Is matches it.
func (e *FieldError) Unwrap() error { return ErrInvalidInstance }

func invalid(field, format string, args ...any) error {
	for i, a := range args {
		if s, ok := a.(string); ok && len(s) > maxQuoted {
			args[i] = clipped(s)
		}
	}
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// maxQuoted is the longest string a FieldError quotes whole: the values it
// quotes may come from another writer of the registry, and its text is
// logged and printed for every value skipped.
const maxQuoted = 64

// clipped is a string longer than maxQuoted, which formats as its first
// bytes (cut at a character boundary) followed by "..." and its length.
type clipped string

// Format implements fmt.Formatter: %q quotes the prefix.
func (c clipped) Format(f fmt.State, verb rune) {
	prefix := clipPrefix(string(c))
	if verb == 'q' {
		fmt.Fprintf(f, "%q...(%d bytes)", prefix, len(c))
		return
	}
	fmt.Fprintf(f, "%s...(%d bytes)", prefix, len(c))
}

// clip returns s, or its first bytes followed by "..." and its length
// when it is longer than maxQuoted.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return fmt.Sprint(clipped(s))
}

// clipPrefix returns the first maxQuoted bytes of s, fewer if that would
// cut a UTF-8 character.
func clipPrefix(s string) string {
	n := maxQuoted
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
