package fxmodule

import (
	"cmp"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/retry"
)

// BackendSpec describes a backend to BuildBackend, for that backend's fx
// module (etcdfx, natsfx, memoryfx, or an application's own module for
// its own backend). C is what configures the backend: its Config type
// (etcd.Config), or what its constructor takes (the memory backend's
// *memory.Store).
type BackendSpec[C any] struct {
	// Name is the backend's name, as Config.Backend gives it
	// (BackendEtcd); Module names the fx module in errors
	// ("etcdfx.Module"), and its package ("etcdfx") prefixes Build's
	// error.
	Name, Module string
	// FromEnv, when not nil, reads C from the environment (pass
	// etcd.ConfigFromEnv) when the application supplies a zero C; its
	// error is wrapped with ErrInvalidConfig.
	FromEnv func(lookup func(string) (string, bool)) (C, error)
	// Fields, when not nil, points at the fields of c that default to
	// the module's: Config.Timeout for the dial and request timeouts,
	// Config.Retry for the retry policy, and the application's logger
	// (a nil pointer for a field the backend does not have).
	Fields func(c *C) (dialTimeout, requestTimeout *time.Duration, retry *retry.Policy, logger *hclog.Logger)
	// Build makes the backend from C and the module's Config.
	Build func(c C, mod Config) (discovery.Backend, error)
}

// BuildBackend is the constructor of a backend's fx module: it loads the
// module's Config (LoadConfig(mod)) and refuses another backend's name
// (CheckBackend); takes cfg, or spec.FromEnv's when cfg is zero, with
// the module's defaults where it leaves spec.Fields zero (logger is the
// application's, nil for the backend's own); builds the backend; and,
// with a Lifecycle, closes it at stop (after the module has deregistered
// the instances, since the registration depends on the backend). An
// invalid Config or environment gives an error wrapping ErrInvalidConfig
// that names the field or variable.
func BuildBackend[C any](spec BackendSpec[C], lc fx.Lifecycle, mod Config, cfg C, logger hclog.Logger) (Result, error) {
	mod, err := LoadConfig(mod)
	if err != nil {
		return Result{}, err
	}
	if err := mod.CheckBackend(spec.Name, spec.Module); err != nil {
		return Result{}, err
	}
	if spec.FromEnv != nil && reflect.ValueOf(&cfg).Elem().IsZero() {
		if cfg, err = spec.FromEnv(os.LookupEnv); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if spec.Fields != nil {
		// A nil pointer: the backend has no such field.
		dial, req, pol, l := spec.Fields(&cfg)
		for _, d := range []*time.Duration{dial, req} {
			if d != nil {
				*d = cmp.Or(*d, mod.Timeout)
			}
		}
		if pol != nil && *pol == (retry.Policy{}) {
			*pol = mod.Retry
		}
		if l != nil && *l == nil {
			*l = logger // nil: the backend's default
		}
	}
	b, err := spec.Build(cfg, mod)
	if err != nil {
		pkg, _, _ := strings.Cut(spec.Module, ".")
		return Result{}, fmt.Errorf("%s: %s backend: %w", pkg, spec.Name, err)
	}
	if lc != nil {
		lc.Append(fx.StopHook(b.Close))
	}
	return ResultOf(b), nil
}
