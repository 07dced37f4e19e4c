package webui

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"
)

// reconnectMillis is how long a browser waits before it opens the stream
// again after losing it (the "retry" field of server-sent events).
const reconnectMillis = 2000

// client is one open event stream: what changed since it last wrote. Its
// sets hold each service or lease at most once, so a stream that falls
// behind holds no more than the state's size.
type client struct {
	notify   chan struct{} // capacity 1: something changed
	evicted  chan struct{} // closed when a newer stream took its place
	opened   time.Time
	writing  time.Time // when the write in progress started; zero: none (guarded by hub.mu)
	status   bool
	services map[string]struct{}
	leases   map[string]struct{}
}

func (c *client) wakeLocked() {
	select {
	case c.notify <- struct{}{}:
	default: // pending already
	}
}

func (h *hub) markStatusLocked() {
	for c := range h.clients {
		c.status = true
		c.wakeLocked()
	}
}

func (h *hub) markServiceLocked(name string) {
	for c := range h.clients {
		c.services[name] = struct{}{}
		c.wakeLocked()
	}
}

func (h *hub) markLeaseLocked(id string) {
	for c := range h.clients {
		c.leases[id] = struct{}{}
		c.wakeLocked()
	}
}

// serveEvents serves the event stream: the whole state as an event named
// "state" at once, then what changed ("services", "leases", "status"),
// at most one event of each kind every publishEvery. It ends when the
// request's context ends (the browser went away), when a write does not
// complete within the write timeout, when a newer stream takes its place
// (see subscribe), or when the Handler is closed.
func (h *hub) serveEvents(w http.ResponseWriter, r *http.Request) {
	c := h.subscribe()
	defer h.unsubscribe(c)

	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	hdr.Set("Connection", "close")     // a stream that ends (Close, a newer one took its place) ends its connection
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	var id uint64
	write := func(event string, data []byte) error {
		h.mu.Lock()
		c.writing = time.Now()
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			c.writing = time.Time{}
			h.mu.Unlock()
		}()
		if err := rc.SetWriteDeadline(time.Now().Add(h.o.writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		var err error
		if event == "" {
			_, err = fmt.Fprintf(w, "%s\n\n", data)
		} else {
			id++
			_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, event, data)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write("", fmt.Appendf(nil, "retry: %d", reconnectMillis)); err != nil {
		return
	}
	if err := write("state", h.snapshot(c)); err != nil {
		return
	}
	heartbeat := time.NewTicker(h.o.heartbeat)
	defer heartbeat.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-h.ctx.Done():
			return
		case <-c.evicted:
			h.log.Debug("event stream ended for a newer one", "remote", r.RemoteAddr)
			return
		case <-c.notify:
			// Let the changes of the next moments join these.
			select {
			case <-pace.C:
			case <-r.Context().Done():
				return
			case <-h.ctx.Done():
				return
			}
			for _, ev := range h.changes(c) {
				if err = write(ev.name, ev.data); err != nil {
					break
				}
			}
			pace.Reset(publishEvery)
		case <-heartbeat.C:
			err = write("", []byte(": keep-alive"))
		}
		if err != nil {
			h.log.Debug("event stream ended", "remote", r.RemoteAddr, "error", err)
			return
		}
	}
}

// subscribe opens a stream. When as many are open as allowed, the one
// stuck longest in a write (for over stuckFor), or else the oldest, is
// ended to make room:
// a browser reconnects on its own, while a client that opens streams and
// never reads them would otherwise lock every browser out. It wakes the
// followers that wait for a stream to open.
func (h *hub) subscribe() *client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) >= h.o.maxClients {
		var victim *client
		for c := range h.clients {
			if victim == nil || older(c, victim) {
				victim = c
			}
		}
		delete(h.clients, victim)
		close(victim.evicted)
		h.log.Debug("too many event streams, ending one", "opened", victim.opened)
	}
	c := &client{
		notify:   make(chan struct{}, 1),
		evicted:  make(chan struct{}),
		opened:   time.Now(),
		services: make(map[string]struct{}),
		leases:   make(map[string]struct{}),
	}
	h.clients[c] = struct{}{}
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return c
}

// stuckFor is how long a write must have been in progress for its stream
// to count as stuck (a browser that stopped reading) rather than busy.
const stuckFor = time.Second

// older reports whether a should be ended before b: it has been stuck in
// a write for longer, or neither is stuck and it is older.
func older(a, b *client) bool {
	now := time.Now()
	aStuck := !a.writing.IsZero() && now.Sub(a.writing) > stuckFor
	bStuck := !b.writing.IsZero() && now.Sub(b.writing) > stuckFor
	switch {
	case aStuck && bStuck:
		return a.writing.Before(b.writing)
	case aStuck != bStuck:
		return aStuck
	}
	return a.opened.Before(b.opened)
}

func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
}

// snapshot returns the whole state for c, and clears what c had pending.
func (h *hub) snapshot(c *client) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(c.services)
	clear(c.leases)
	c.status = false
	return h.snapshotLocked()
}

// sse is one event to send.
type sse struct {
	name string
	data []byte
}

// changes returns the events for what changed since c last wrote, and
// clears it.
func (h *hub) changes(c *client) []sse {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []sse
	if c.status {
		c.status = false
		out = append(out, sse{"status", h.encode(h.statusLocked())})
	}
	if len(c.services) > 0 {
		list := make([]serviceJSON, 0, len(c.services))
		for _, name := range slices.Sorted(maps.Keys(c.services)) {
			list = append(list, h.serviceLocked(name))
		}
		clear(c.services)
		out = append(out, sse{"services", h.encode(struct {
			Services []serviceJSON `json:"services"`
		}{list})})
	}
	if len(c.leases) > 0 {
		now := time.Now()
		m := make(map[string]*leaseJSON, len(c.leases))
		for id := range c.leases {
			m[id] = h.leaseLocked(id, now) // nil: not read (any more)
		}
		clear(c.leases)
		out = append(out, sse{"leases", h.encode(struct {
			Leases map[string]*leaseJSON `json:"leases"`
		}{m})})
	}
	return out
}
