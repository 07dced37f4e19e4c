package webui

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// reconnectMillis is how long a browser waits before it opens the stream
// again after losing it (the "retry" field of server-sent events).
const reconnectMillis = 2000

// serveEvents serves the event stream: the current state as an event
// named "state" at once, then the newest state each time it changes, as
// server-sent events whose id is the state's number. A stream that falls
// behind skips to the newest state. It ends when the request's context
// ends (the browser went away), when a write does not complete within the
// write timeout, or when the Handler is closed.
func (h *hub) serveEvents(w http.ResponseWriter, r *http.Request) {
	notify, ok := h.subscribe()
	if !ok {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many open event streams", http.StatusServiceUnavailable)
		return
	}
	defer h.unsubscribe(notify)

	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	var sent uint64
	write := func(format string, args ...any) error {
		if err := rc.SetWriteDeadline(time.Now().Add(h.o.writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	sendState := func() error {
		ev := h.latest()
		if ev.id == sent {
			return nil
		}
		sent = ev.id
		return write("id: %d\nevent: state\ndata: %s\n\n", ev.id, ev.data)
	}
	if err := write("retry: %d\n\n", reconnectMillis); err != nil {
		return
	}
	if err := sendState(); err != nil {
		return
	}
	heartbeat := time.NewTicker(h.o.heartbeat)
	defer heartbeat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-h.ctx.Done():
			return
		case <-notify:
			err = sendState()
		case <-heartbeat.C:
			err = write(": keep-alive\n\n")
		}
		if err != nil {
			h.log.Debug("event stream ended", "remote", r.RemoteAddr, "error", err)
			return
		}
	}
}

// subscribe opens a stream, unless too many are open: it returns the
// channel that tells it the state changed, wakes the scanner and tells
// the followers a stream opened.
func (h *hub) subscribe() (chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients >= h.o.maxClients {
		return nil, false
	}
	h.clients++
	ch := make(chan struct{}, 1)
	h.notify[ch] = struct{}{}
	close(h.arrived)
	h.arrived = make(chan struct{})
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return ch, true
}

func (h *hub) unsubscribe(ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.notify, ch)
	h.clients--
}

// latest returns the newest state.
func (h *hub) latest() event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}
