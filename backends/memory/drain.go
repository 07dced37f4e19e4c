package memory

import "time"

// WithDrainOnClose makes Close take the Backend's instances out of
// rotation before it removes them: it publishes every registered instance
// in discovery.ConditionDraining (an update in place), waits for the rest
// of d so that watchers see it and clients stop sending new work, then
// removes them. Close takes at most d longer; in an outage of the Store it
// gives up the drain at d and removes the instances as usual. The default,
// 0, removes them at once. A negative d makes New fail with an error
// wrapping ErrInvalidOption. See backendkit.DrainOnClose.
func WithDrainOnClose(d time.Duration) Option {
	return func(o *options) { o.drainOnClose = d }
}
