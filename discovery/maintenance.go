package discovery

import (
	"context"
	"errors"
	"time"
	"unicode/utf8"
)

// ErrNoMaintenance reports a ClearMaintenance of a target that has no
// maintenance override.
var ErrNoMaintenance = errors.New("discovery: no maintenance override")

// Maintainer is an optional interface of a backend on which an operator can
// take an instance, or a whole service, out of rotation without touching
// the process that registered it (Consul's maintenance mode, Eureka's
// OUT_OF_SERVICE override). roster's etcd, NATS and memory backends
// implement it.
//
// An override is stored apart from the instance's own key: the owning
// process keeps writing its instance and never undoes the operator's
// override, which survives the process's restarts and the registry's. Every
// Resolve and Watch of the backend merges the overrides of a service into
// its instances (see ApplyMaintenance): an instance under an override reads
// as ConditionMaintenance with the operator's reason, and no RoutePolicy
// routes to it. An override may name an instance that is not registered
// yet: it applies when the instance appears. A change of override reaches
// a Watcher as one set change, like any update in place.
type Maintainer interface {
	// SetMaintenance puts target under an override with reason, for d (it
	// then ends by itself), or until ClearMaintenance when d is 0. A
	// target with an empty ID is the whole service: every instance of it,
	// present and future. Setting an override again replaces it (its
	// reason and its end). Invalid input (see ValidateMaintenance) gives
	// an error wrapping ErrInvalidInstance, with a *FieldError naming the
	// field, and writes nothing.
	SetMaintenance(ctx context.Context, target Key, reason string, d time.Duration) error

	// ClearMaintenance removes target's override, puts the instance (or
	// the service) back in its own condition, and returns nil; an error
	// wrapping ErrNoMaintenance when target has none (an override of the
	// whole service and one of an instance are separate targets).
	ClearMaintenance(ctx context.Context, target Key) error

	// ListMaintenance returns the overrides set on service and on its
	// instances, registered or not, sorted by ID (the whole service's
	// first).
	ListMaintenance(ctx context.Context, service string) ([]Maintenance, error)
}

// Maintenance is an operator's override: a service, or one instance of it,
// taken out of rotation.
type Maintenance struct {
	// Service is the service the override applies to.
	Service string `json:"service"`
	// ID is the instance the override applies to; empty for every
	// instance of Service.
	ID string `json:"id,omitempty"`
	// Reason is the operator's reason, which readers show as the Reason of
	// the instances under the override.
	Reason string `json:"reason"`
	// Since is when the override was set, by the setter's clock.
	Since time.Time `json:"since"`
	// Until is when the override ends by itself, by the setter's clock;
	// zero when it lasts until cleared. The registry ends it (etcd's
	// lease, NATS's per-key TTL), not the readers' clocks.
	Until time.Time `json:"until,omitzero"`
}

// Target returns the override's target: its Service and ID.
func (m Maintenance) Target() Key { return Key{Service: m.Service, ID: m.ID} }

// ValidateMaintenance checks the arguments of SetMaintenance: a valid
// service name (field "Service"), an empty or valid ID ("ID"), a reason of
// 1..MaxReasonLen bytes of printable UTF-8 ("Reason") and a duration of 0
// (until cleared) or more ("Duration"). Its error is a *FieldError wrapping
// ErrInvalidInstance.
func ValidateMaintenance(target Key, reason string, d time.Duration) error {
	if err := ValidateTarget(target); err != nil {
		return err
	}
	switch {
	case reason == "":
		return invalid("Reason", "must not be empty: say why the operator took it out of rotation")
	case len(reason) > MaxReasonLen:
		return invalid("Reason", "is %d bytes long, more than the %d allowed", len(reason), MaxReasonLen)
	case !utf8.ValidString(reason):
		return invalid("Reason", "is not valid UTF-8")
	case !isPrintable(reason):
		return invalid("Reason", "has a non-printable character such as a newline")
	}
	if d < 0 {
		return invalid("Duration", "is %v; want more than 0, or 0 for an override that lasts until cleared", d)
	}
	return nil
}

// ValidateTarget checks the target of an override: a valid service name
// (field "Service") and an empty or valid ID ("ID").
func ValidateTarget(target Key) error {
	if err := ValidateName("Service", target.Service); err != nil {
		return err
	}
	if target.ID != "" {
		return ValidateName("ID", target.ID)
	}
	return nil
}

// Validate checks an override as read from a registry: its target, reason
// and times.
func (m Maintenance) Validate() error {
	if err := ValidateMaintenance(m.Target(), m.Reason, 0); err != nil {
		return err
	}
	if !m.Until.IsZero() && m.Until.Before(m.Since) {
		return invalid("Until", "is before Since")
	}
	return nil
}

// ApplyMaintenance returns set with the overrides merged in: an instance
// with an override of its own, or of its whole service, reads as
// ConditionMaintenance with the override's reason (its own override's
// when it has both). Overrides of other services, and of instances not in
// set, change nothing. The slice is new and in set's order; instances
// that change are copies, the others share their Metadata with set.
func ApplyMaintenance(set []Instance, overrides []Maintenance) []Instance {
	out := make([]Instance, len(set))
	copy(out, set)
	if len(overrides) == 0 {
		return out
	}
	byTarget := make(map[Key]Maintenance, len(overrides))
	for _, m := range overrides {
		byTarget[m.Target()] = m
	}
	for i, in := range out {
		m, ok := byTarget[in.Key()]
		if !ok {
			m, ok = byTarget[Key{Service: in.Service}]
		}
		if ok {
			out[i] = in.Clone()
			out[i].Condition = ConditionMaintenance
			out[i].Reason = m.Reason
		}
	}
	return out
}
