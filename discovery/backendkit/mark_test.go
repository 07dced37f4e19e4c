package backendkit_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
)

func TestMark(t *testing.T) {
	t.Parallel()
	cause := fmt.Errorf("no connection: %w", io.EOF)
	err := backendkit.Mark(cause, discovery.ErrUnavailable)
	if got, want := err.Error(), cause.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	for _, target := range []error{cause, io.EOF, discovery.ErrUnavailable} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
		}
	}
	if errors.Is(err, discovery.ErrRemoved) {
		t.Errorf("errors.Is(%v, ErrRemoved) = true, want false", err)
	}
	if backendkit.Mark(nil, discovery.ErrUnavailable) != nil {
		t.Error("Mark(nil, ...) != nil")
	}
}

func ExampleMark() {
	err := backendkit.Mark(errors.New("lease expired"), discovery.ErrRemoved)
	fmt.Println(err, errors.Is(err, discovery.ErrRemoved))
	// Output: lease expired true
}
