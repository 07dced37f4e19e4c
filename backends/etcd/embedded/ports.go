package embedded

import (
	"errors"
	"strings"
	"syscall"
)

// portAttempts is how many times New and NewCluster start etcd on fresh
// ports when a port freeport.Reserve picked was taken before etcd bound it.
const portAttempts = 3

// withFreshPorts runs start, which picks its ports with freeport.Reserve, up to
// portAttempts times while it fails on a port taken meanwhile (by another
// test process, or by a listener of this one). A data directory given with
// WithDataDir may hold what a failed start wrote, so then start runs once.
func withFreshPorts[T any](o options, start func() (T, error)) (T, error) {
	v, err := start()
	for range portAttempts - 1 {
		if err == nil || o.dataDir != "" || !portTaken(err) {
			break
		}
		v, err = start()
	}
	return v, err
}

// portTaken reports whether err is a failure to bind a port in use.
func portTaken(err error) bool {
	// etcd does not always wrap the bind error; its text says it.
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
