package backendkit

// Mark returns an error with err's message that errors.Is and errors.As
// match against both err (and what it wraps) and sentinel: a way for a
// backend to classify its own errors under a discovery sentinel (such as
// discovery.ErrUnavailable or discovery.ErrRemoved) without changing
// their text. Mark(nil, sentinel) is nil.
func Mark(err, sentinel error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, sentinel: sentinel}
}

type marked struct{ err, sentinel error }

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() []error { return []error{m.err, m.sentinel} }
