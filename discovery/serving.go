package discovery

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits and defaults of the serving fields of an Instance (Condition,
// Reason, Weight, Zone), enforced by Instance.Validate.
const (
	// DefaultWeight is the weight of an instance whose Weight is 0 (unset),
	// such as every instance written before Weight existed.
	DefaultWeight = 100
	// MaxWeight is the largest Weight. Weights are relative: an instance
	// of weight 200 gets twice the new traffic of one of weight 100.
	MaxWeight = 10000
	// MaxReasonLen is the longest Reason, in bytes.
	MaxReasonLen = 256
)

// Condition says whether an instance should get new traffic. The zero value
// is ConditionServing, so that an instance written without a condition (by
// an older roster or by another tool) is serving.
//
// It is encoded in the registry value as text ("serving", "not_ready",
// "draining", "maintenance"), and omitted when it is ConditionServing.
type Condition uint8

const (
	// ConditionServing: the instance takes new traffic. The zero value.
	ConditionServing Condition = iota
	// ConditionNotReady: the instance runs but should not get new traffic
	// now: it is starting, or its health check fails. It stays visible to
	// Resolve and Watch; clients route to it only when no instance of the
	// service is serving (see RoutePolicy).
	ConditionNotReady
	// ConditionDraining: the instance is leaving on purpose. It finishes
	// what it has and takes nothing new; its removal that follows is a
	// deliberate one, not a crash.
	ConditionDraining
	// ConditionMaintenance: an operator has taken the instance out of
	// rotation. It is how readers show an operator's override; a process
	// never publishes it for itself, and Validate rejects it in the
	// instance a process registers.
	ConditionMaintenance
)

var conditionNames = [...]string{
	ConditionServing:     "serving",
	ConditionNotReady:    "not_ready",
	ConditionDraining:    "draining",
	ConditionMaintenance: "maintenance",
}

// String returns the condition's name: "serving", "not_ready", "draining",
// "maintenance", or "Condition(n)" for an unknown value.
func (c Condition) String() string {
	if int(c) < len(conditionNames) {
		return conditionNames[c]
	}
	return fmt.Sprintf("Condition(%d)", uint8(c))
}

// ParseCondition returns the condition named s, as String writes it; the
// empty string is ConditionServing, as an absent condition reads.
func ParseCondition(s string) (Condition, error) {
	if s == "" {
		return ConditionServing, nil
	}
	for c, name := range conditionNames {
		if s == name {
			return Condition(c), nil
		}
	}
	return 0, fmt.Errorf("discovery: unknown condition %q; want serving, not_ready, draining or maintenance", s)
}

// MarshalText implements encoding.TextMarshaler. An unknown value is an
// error.
func (c Condition) MarshalText() ([]byte, error) {
	if int(c) >= len(conditionNames) {
		return nil, fmt.Errorf("discovery: cannot encode unknown condition %d", uint8(c))
	}
	return []byte(conditionNames[c]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseCondition.
// A value naming a condition this version does not know is an error, so
// a reader drops such an instance as it drops any invalid value.
func (c *Condition) UnmarshalText(b []byte) error {
	v, err := ParseCondition(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// EffectiveWeight returns the instance's Weight, or DefaultWeight when it
// is 0 (unset).
func (in Instance) EffectiveWeight() int {
	if in.Weight == 0 {
		return DefaultWeight
	}
	return in.Weight
}

// validateServing checks Condition, Reason, Weight and Zone.
func (in Instance) validateServing() error {
	switch {
	case in.Condition == ConditionMaintenance:
		return invalid("Condition", "is maintenance, which only an operator sets; a process publishes serving, not_ready or draining")
	case int(in.Condition) >= len(conditionNames):
		return invalid("Condition", "is %d, which is not a known condition", uint8(in.Condition))
	}
	switch {
	case len(in.Reason) > MaxReasonLen:
		return invalid("Reason", "is %d bytes long, more than the %d allowed (SanitizeReason shortens one)", len(in.Reason), MaxReasonLen)
	case !utf8.ValidString(in.Reason):
		return invalid("Reason", "is not valid UTF-8")
	case !isPrintable(in.Reason):
		return invalid("Reason", "has a non-printable character such as a newline (SanitizeReason replaces them)")
	}
	if in.Weight < 0 || in.Weight > MaxWeight {
		return invalid("Weight", "is %d; want 1..%d, or 0 for the default (%d)", in.Weight, MaxWeight, DefaultWeight)
	}
	if in.Zone != "" {
		if err := ValidateName("Zone", in.Zone); err != nil {
			return err
		}
	}
	return nil
}

// SanitizeReason makes s a valid Reason: invalid UTF-8 and non-printable
// characters (newlines, tabs, control characters) become spaces, runs of
// spaces become one, and the result is cut at a character boundary to at
// most MaxReasonLen bytes, ending in "..." when cut. Health checks use it
// to publish their output.
func SanitizeReason(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, " ") {
		if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	out := strings.TrimRight(b.String(), " ")
	if len(out) <= MaxReasonLen {
		return out
	}
	cut := MaxReasonLen - len("...")
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + "..."
}

// RoutePolicy says which instances of a service get new traffic. Its zero
// value is the default: the serving instances, or, when none is serving,
// the not-ready ones (see Select). Clients that route (the gRPC resolver,
// the cache) use it, so that they all pick alike.
type RoutePolicy struct {
	// NoFallback, when set, routes to serving instances only, even when
	// none is serving and the service gets no traffic at all.
	//
	// By default a service none of whose instances is serving falls back
	// to its not-ready ones: a check that fails on every instance at once
	// (a shared dependency down, a check that is wrong) would otherwise
	// turn into a total outage. This is Envoy's panic threshold, taken at
	// 0%: roster falls back only when no instance is serving, never to
	// share load when some are.
	NoFallback bool
}

// Select returns the instances of set that get new traffic, in set's
// order: those in ConditionServing; or, when there is none and the policy
// allows it, those in ConditionNotReady, with fallback set. Draining and
// maintenance instances are never selected, nor any of an unknown
// condition. The slice is new; the instances' Metadata maps are shared
// with set.
func (p RoutePolicy) Select(set []Instance) (routed []Instance, fallback bool) {
	routed = pick(set, ConditionServing)
	if len(routed) > 0 || p.NoFallback {
		return routed, false
	}
	routed = pick(set, ConditionNotReady)
	return routed, len(routed) > 0
}

// Routable returns the instances of set that get new traffic under the
// default RoutePolicy: the serving ones, or the not-ready ones (with
// fallback set) when none is serving.
func Routable(set []Instance) (routed []Instance, fallback bool) {
	return RoutePolicy{}.Select(set)
}

func pick(set []Instance, c Condition) []Instance {
	out := make([]Instance, 0, len(set))
	for _, in := range set {
		if in.Condition == c {
			out = append(out, in)
		}
	}
	return out
}
