package etcd

import "github.com/roster-sd/roster/discovery/backendkit"

// drainOnClose publishes the Backend's registered instances draining and
// waits, at most Config.DrainOnClose (none when zero), before Close
// removes them; see backendkit.DrainOnClose.
func (b *Backend) drainOnClose() error {
	return backendkit.DrainOnClose(b, b, b.cfg.DrainOnClose)
}
