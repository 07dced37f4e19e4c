package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/cache"
	"github.com/roster-sd/roster/discovery/discoverytest"
	"github.com/roster-sd/roster/retry"
)

// cachedBackend is a memory Backend whose reads go through a cache.Resolver
// on it, so that the conformance suite checks the cache's Resolve and Watch
// (invalid service names, copies, coalescing, Close) as it checks a
// backend's.
type cachedBackend struct {
	*memory.Backend
	c *cache.Resolver
}

func (b *cachedBackend) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	return b.c.Resolve(ctx, service)
}

func (b *cachedBackend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	return b.c.Watch(ctx, service)
}

// Close closes the cache, then the backend under it.
func (b *cachedBackend) Close() error { return errors.Join(b.c.Close(), b.Backend.Close()) }

type cacheHarness struct{ store *memory.Store }

func (h *cacheHarness) MakeBackend(context.Context) (discovery.Backend, error) {
	b, err := memory.New(h.store, memory.WithRetry(retry.Policy{Base: time.Millisecond, Max: 10 * time.Millisecond}))
	if err != nil {
		return nil, err
	}
	c, err := cache.New(b, cache.WithRetry(fastRetry))
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return &cachedBackend{Backend: b, c: c}, nil
}

func (h *cacheHarness) Close() {}

// TestConformance runs discoverytest on the cache over the memory backend:
// the cache must keep the Resolver contract of what it caches.
func TestConformance(t *testing.T) {
	discoverytest.Run(t, func(context.Context, *testing.T) (discoverytest.Harness, error) {
		return &cacheHarness{store: memory.NewStore()}, nil
	}, discoverytest.Capabilities{Status: true, Conflict: true})
}
