package fleetsim

import (
	"maps"
	"runtime"
	"testing"
	"time"
)

// TestMethodsUpTo: a process's requests counted up to a moment already
// past leave out those sent after it (a status the bench reads late must
// not be charged the keep-alive sent after it), and keep the older ones.
func TestMethodsUpTo(t *testing.T) {
	t.Parallel()
	pt := &procTraffic{fleet: &traffic{}}
	for range 20 { // more than recentRequests, all before the moment
		pt.count("LeaseKeepAlive", false)
	}
	pt.count("LeaseGrant", false)
	pt.count("Txn", true)
	moment := time.Now()
	for !time.Now().After(moment) { // a clock step, however coarse
		runtime.Gosched()
	}
	pt.count("LeaseKeepAlive", false)
	pt.count("Watch", true)

	want := map[string]int64{"LeaseKeepAlive": 20, "LeaseGrant": 1, "Txn": 1}
	if got := pt.methodsUpTo(moment); !maps.Equal(got, want) {
		t.Errorf("methodsUpTo(moment) = %v; want %v", got, want)
	}
	want = map[string]int64{"LeaseKeepAlive": 21, "LeaseGrant": 1, "Txn": 1, "Watch": 1}
	if got := pt.methodsUpTo(time.Now()); !maps.Equal(got, want) {
		t.Errorf("methodsUpTo(now) = %v; want %v", got, want)
	}
	if got := pt.methods(); !maps.Equal(got, want) {
		t.Errorf("methods() = %v; want %v", got, want)
	}
}
