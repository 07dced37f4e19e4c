package backendkit

import (
	"hash/fnv"
	"sync"
)

// maxSkipLog bounds the keys a SkipLog remembers; past it, it forgets
// them all and starts again.
const maxSkipLog = 4096

// SkipLog decides when a backend logs a value that it skips, one that is
// not a valid instance (someone else wrote it): once per key and
// revision, however many lists, re-lists and watch events read it, so
// that one bad value costs one log line per process and not one per read.
// It remembers a hash of each key, never the key, and at most 4096 of
// them. Its zero value is ready to use; it is safe for concurrent use.
type SkipLog struct {
	mu   sync.Mutex
	seen map[uint64]int64 // hash of the key -> revision last logged
}

// First reports whether key at revision is met for the first time, and
// should be logged; it records it either way.
func (s *SkipLog) First(key string, revision int64) bool {
	h := fnv.New64a()
	h.Write([]byte(key))
	sum := h.Sum64()
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev, ok := s.seen[sum]; ok && rev == revision {
		return false
	}
	if s.seen == nil || len(s.seen) >= maxSkipLog {
		s.seen = make(map[uint64]int64)
	}
	s.seen[sum] = revision
	return true
}
