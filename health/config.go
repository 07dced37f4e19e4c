package health

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Config, those of Kubernetes probes.
const (
	DefaultPeriod           = 10 * time.Second
	DefaultTimeout          = time.Second
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
)

// ErrInvalidConfig reports a Config that New refuses.
var ErrInvalidConfig = errors.New("health: invalid config")

// Config holds the probe parameters, as Kubernetes names them. A zero
// field takes its default; a negative one is an error.
type Config struct {
	// InitialDelay is how long after New the first check runs. Default 0.
	InitialDelay time.Duration
	// Period is the time between the start of two checks. Default 10 s.
	Period time.Duration
	// Timeout bounds one check; a check that takes longer fails. Default 1 s.
	Timeout time.Duration
	// SuccessThreshold is how many checks in a row must pass for a not
	// ready instance to become serving. Default 1.
	SuccessThreshold int
	// FailureThreshold is how many checks in a row must fail for a
	// serving instance to become not ready. Default 3.
	FailureThreshold int
}

// Validate reports a negative field, as an error wrapping
// ErrInvalidConfig that names it; New does the same.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with zero fields set to their defaults, or an
// error wrapping ErrInvalidConfig naming a negative field.
func (c Config) withDefaults() (Config, error) {
	neg := func(name string, v int64) error {
		if v < 0 {
			return fmt.Errorf("%w: %s is %d; want 0 (the default) or more", ErrInvalidConfig, name, v)
		}
		return nil
	}
	for _, err := range []error{
		neg("InitialDelay", int64(c.InitialDelay)), neg("Period", int64(c.Period)), neg("Timeout", int64(c.Timeout)),
		neg("SuccessThreshold", int64(c.SuccessThreshold)), neg("FailureThreshold", int64(c.FailureThreshold)),
	} {
		if err != nil {
			return Config{}, err
		}
	}
	if c.Period == 0 {
		c.Period = DefaultPeriod
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.SuccessThreshold == 0 {
		c.SuccessThreshold = DefaultSuccessThreshold
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	return c, nil
}
