package backendkit_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/roster-sd/roster/discovery/backendkit"
)

func TestSkipLogOncePerKeyAndRevision(t *testing.T) {
	t.Parallel()
	var s backendkit.SkipLog
	steps := []struct {
		key  string
		rev  int64
		want bool
	}{
		{"/a", 5, true},
		{"/a", 5, false},
		{"/b", 5, true},
		{"/a", 5, false},
		{"/a", 6, true},
		{"/a", 6, false},
		{"/b", 5, false},
	}
	for i, st := range steps {
		if got := s.First(st.key, st.rev); got != st.want {
			t.Errorf("step %d: First(%q, %d) = %v; want %v", i, st.key, st.rev, got, st.want)
		}
	}
}

func TestSkipLogConcurrentReadersLogOnce(t *testing.T) {
	t.Parallel()
	var s backendkit.SkipLog
	var mu sync.Mutex
	logged := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if s.First("/k"+strconv.Itoa(i%10), 1) {
					mu.Lock()
					logged++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if logged != 10 {
		t.Errorf("%d lines for 10 keys read 80 times each; want 10", logged)
	}
}
