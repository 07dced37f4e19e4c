package metrics

import (
	"context"
	"errors"

	"github.com/roster-sd/roster/discovery"
)

// The values of the cause label, returned by Cause.
const (
	CauseNone        = "none"
	CauseUnavailable = "unavailable"
	CauseRemoved     = "removed"
	CauseConflict    = "conflict"
	CauseTimeout     = "timeout"
	CauseCanceled    = "canceled"
	CauseOther       = "other"
)

// Cause classifies the cause of a status (discovery.Status.Err) into one
// of a few label values, so that the label stays bounded whatever the
// backend's error text: CauseConflict for discovery.ErrConflict,
// CauseRemoved for discovery.ErrRemoved, CauseUnavailable for
// discovery.ErrUnavailable, CauseTimeout for context.DeadlineExceeded,
// CauseCanceled for context.Canceled, CauseNone for nil and CauseOther
// for anything else. The first match in that order wins.
func Cause(err error) string {
	switch {
	case err == nil:
		return CauseNone
	case errors.Is(err, discovery.ErrConflict):
		return CauseConflict
	case errors.Is(err, discovery.ErrRemoved):
		return CauseRemoved
	case errors.Is(err, discovery.ErrUnavailable):
		return CauseUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return CauseTimeout
	case errors.Is(err, context.Canceled):
		return CauseCanceled
	}
	return CauseOther
}
