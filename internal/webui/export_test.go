package webui

// Streams returns the number of event streams h is serving.
func Streams(h *Handler) int {
	h.hub.mu.Lock()
	defer h.hub.mu.Unlock()
	return len(h.hub.clients)
}

// Followed returns the number of services h shows.
func Followed(h *Handler) int {
	h.hub.mu.Lock()
	defer h.hub.mu.Unlock()
	return len(h.hub.services)
}
