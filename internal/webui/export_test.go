package webui

import "time"

// Streams returns the number of event streams h is serving.
func Streams(h *Handler) int {
	h.hub.mu.Lock()
	defer h.hub.mu.Unlock()
	return len(h.hub.clients)
}

// Followed returns the number of services h follows.
func Followed(h *Handler) int {
	h.hub.mu.Lock()
	defer h.hub.mu.Unlock()
	return len(h.hub.services)
}

// SetEmptyGrace sets how long a service without instances stays followed,
// until the test ends. Tests that call it must not run in parallel, and
// must call it before they start a Handler (so that it is restored after
// the Handler has stopped).
func SetEmptyGrace(t interface{ Cleanup(func()) }, d time.Duration) {
	old := emptyGrace
	emptyGrace = d
	t.Cleanup(func() { emptyGrace = old })
}
