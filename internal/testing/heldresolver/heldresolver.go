// Package heldresolver wraps a Backend's Resolver and Watcher so that a
// test can make a watch hold the first set it gets after a moment the test
// chooses, and return it late: the order in which a client (gRPC's
// resolver, the cache) sees a slow watch's first set after an outage and a
// Resolve forced meanwhile. Revisions are passed on when the Backend gives
// them.
package heldresolver

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/roster-sd/roster/discovery"
)

// Resolver is a discovery.Resolver with watchers that can hold a set. Its channels tell the
// test what happened; Release is closed by the test.
type Resolver struct {
	b discovery.Resolver

	// Armed, once set, makes the next set a watcher gets held (once).
	Armed atomic.Bool
	// Outage gets a value when a watcher reports an outage.
	Outage chan struct{}
	// Held gets a value when a set is held.
	Held chan struct{}
	// Release is closed by the test: the held set is returned.
	Release chan struct{}
	// Resumed gets a value when the watcher is asked again after it
	// returned the held set; it then waits for its context's end.
	Resumed chan struct{}
}

// New wraps b.
func New(b discovery.Resolver) *Resolver {
	return &Resolver{b: b, Outage: make(chan struct{}, 1), Held: make(chan struct{}, 1),
		Release: make(chan struct{}), Resumed: make(chan struct{}, 1)}
}

// ResolveRevision resolves through b, with its revision if it gives one.
func (h *Resolver) ResolveRevision(ctx context.Context, service string) ([]discovery.Instance, uint64, error) {
	if rr, ok := h.b.(discovery.RevisionResolver); ok {
		return rr.ResolveRevision(ctx, service)
	}
	set, err := h.b.Resolve(ctx, service)
	return set, 0, err
}

// Resolve resolves through b.
func (h *Resolver) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	set, _, err := h.ResolveRevision(ctx, service)
	return set, err
}

// Watch watches through b, with a watcher that can hold a set.
func (h *Resolver) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	w, err := h.b.Watch(ctx, service)
	if err != nil {
		return nil, err
	}
	return &watcher{h: h, w: w}, nil
}

// watcher is called from its client's goroutine only.
type watcher struct {
	h        *Resolver
	w        discovery.Watcher
	holding  bool
	set      []discovery.Instance
	rev      uint64
	returned bool // the held set was returned: it waits for the end of ctx
}

func (w *watcher) Next(ctx context.Context) ([]discovery.Instance, error) {
	set, _, err := w.NextRevision(ctx)
	return set, err
}

func (w *watcher) NextRevision(ctx context.Context) ([]discovery.Instance, uint64, error) {
	if w.returned {
		select {
		case w.h.Resumed <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return nil, 0, ctx.Err()
	}
	if !w.holding {
		var (
			set []discovery.Instance
			rev uint64
			err error
		)
		if rw, ok := w.w.(discovery.RevisionWatcher); ok {
			set, rev, err = rw.NextRevision(ctx)
		} else {
			set, err = w.w.Next(ctx)
		}
		if errors.Is(err, discovery.ErrUnavailable) {
			select {
			case w.h.Outage <- struct{}{}:
			default:
			}
		}
		if err != nil || !w.h.Armed.CompareAndSwap(true, false) {
			return set, rev, err
		}
		w.holding, w.set, w.rev = true, set, rev
		w.h.Held <- struct{}{}
	}
	select {
	case <-w.h.Release:
		w.holding, w.returned = false, true
		return w.set, w.rev, nil
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

func (w *watcher) Stop() { w.w.Stop() }
