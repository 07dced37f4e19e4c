package fleetsim

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"strings"
)

// In embedded mode the cluster (etcd's or NATS's) runs in the bench's own
// process, so runtime.NumGoroutine and the heap count the servers' side
// of every connection along with the simulated processes'. The bench reports the
// simulated processes' own cost: goroutines and live heap whose stacks
// touch no server code.

// benchMemProfileRate is the heap profile's sampling rate while the bench
// runs: fine enough to attribute the heap of a thousand small clients.
const benchMemProfileRate = 4096

// serverFrames are the function name prefixes and fragments that mark a
// goroutine or an allocation as the embedded cluster's, the fault
// proxy's, or the NATS relays' (natsRelay, the bench's own).
var serverFrames = []string{
	"go.etcd.io/etcd/server/",
	"go.etcd.io/raft/",
	"go.etcd.io/bbolt",
	"go.etcd.io/etcd/pkg/v3/",
	"github.com/roster-sd/roster/backends/etcd/embedded.",
	"github.com/roster-sd/roster/internal/faultproxy.",
	"github.com/roster-sd/roster/backends/nats/embedded.",
	"github.com/nats-io/nats-server/",
	"github.com/roster-sd/roster/internal/fleetsim.(*natsRelay)",
	"github.com/roster-sd/roster/internal/fleetsim.newNATSRelay",
	"google.golang.org/grpc/internal/transport.(*http2Server)",
	"google.golang.org/grpc/internal/transport.NewServerTransport",
	"google.golang.org/grpc.(*Server)",
	"google.golang.org/grpc.(*serverStream)",
	"net/http.(*conn)",
	"net/http.(*Server)",
	"go.uber.org/zap",
	"github.com/prometheus/",
	"go.opentelemetry.io/",
}

// simPackage prefixes the functions of this package.
const simPackage = "github.com/roster-sd/roster/internal/fleetsim."

func isServerFrame(fn string) bool {
	for _, s := range serverFrames {
		if strings.HasPrefix(fn, s) {
			return true
		}
	}
	return false
}

// clientGoroutines counts the goroutines that are the simulated
// processes' own: not the embedded servers', and not the bench's
// observers (goroutines started by this package).
func clientGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		var funcs []string
		entry := ""
		for line := range strings.SplitSeq(g, "\n") {
			switch {
			case line == "", strings.HasPrefix(line, "\t"), strings.HasPrefix(line, "goroutine "):
				continue
			case strings.HasPrefix(line, "created by "):
				line = strings.TrimPrefix(line, "created by ")
				if i := strings.Index(line, " in goroutine "); i >= 0 {
					line = line[:i]
				}
				if len(funcs) > 0 {
					entry = funcs[len(funcs)-1]
				}
			default:
				if i := strings.LastIndex(line, "("); i > 0 && strings.HasSuffix(line, ")") {
					line = line[:i]
				}
			}
			funcs = append(funcs, line)
		}
		if len(funcs) == 0 || slices.ContainsFunc(funcs, isServerFrame) {
			continue
		}
		if strings.HasPrefix(entry, simPackage) {
			continue // the bench's observers
		}
		count++
	}
	return count
}

// heapOwners name who a heap allocation is charged to: the innermost
// frame on its stack from one of these packages.
var heapOwners = []struct{ prefix, name string }{
	{simPackage, "the bench's bookkeeping"},
	{"github.com/roster-sd/roster/", "roster"},
	{"go.etcd.io/etcd/client/", "etcd client"},
	{"github.com/nats-io/nats.go", "NATS client"},
	{"github.com/nats-io/nats%2ego", "NATS client"}, // as the runtime escapes it
	{"google.golang.org/grpc", "gRPC (connection, streams, buffers)"},
	{"golang.org/x/net/http2", "gRPC (connection, streams, buffers)"},
}

func heapOwner(fn string) string {
	for _, o := range heapOwners {
		if strings.HasPrefix(fn, o.prefix) {
			return o.name
		}
	}
	return ""
}

// HeapShare is live heap attributed to one owner (see heapOwners).
type HeapShare struct {
	Site  string  `json:"site"`
	Bytes float64 `json:"bytes"`
}

// clientHeap estimates, from the heap profile as of the last GC, the live
// heap of the simulated processes (allocations whose stack touches no
// server code), and who it is charged to, most first.
func clientHeap() (total float64, top []HeapShare) {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		n, ok = runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	bySite := make(map[string]float64)
	for i := range recs {
		r := &recs[i]
		if r.InUseBytes() <= 0 || r.AllocObjects == 0 {
			continue
		}
		site, leaf, server := "", "", false
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			fn := f.Function
			if isServerFrame(fn) {
				server = true
				break
			}
			if leaf == "" && fn != "" && !strings.HasPrefix(fn, "runtime.") {
				leaf = fn
			}
			if site == "" {
				site = heapOwner(fn)
			}
			if !more {
				break
			}
		}
		if server {
			continue
		}
		if site == "" {
			site = leaf
		}
		if site == "" {
			// Allocated by the runtime alone: the descriptors of new
			// goroutines (runtime.malg), with no caller above newproc.
			site = "runtime (goroutine descriptors)"
		}
		// Unsample as pprof does: an object of size s is recorded with
		// probability 1-exp(-s/rate).
		bytes := float64(r.InUseBytes())
		if rate > 1 {
			avg := float64(r.AllocBytes) / float64(r.AllocObjects)
			bytes /= 1 - math.Exp(-avg/rate)
		}
		total += bytes
		bySite[site] += bytes
	}
	for s, b := range bySite {
		top = append(top, HeapShare{Site: s, Bytes: b})
	}
	slices.SortFunc(top, func(a, b HeapShare) int { return cmp.Compare(b.Bytes, a.Bytes) })
	return total, top
}
