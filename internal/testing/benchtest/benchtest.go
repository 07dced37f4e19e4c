// Package benchtest holds the loop of the etcd and NATS backends'
// propagation benchmarks: how long a change takes to reach a Watcher of
// another Backend, against a raw write of the registry reaching a raw
// watch, interleaved in the same run. It imports testing, so only _test.go
// files may import it.
package benchtest

import (
	"context"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// Seen is when a watcher saw a change, and its size: for roster's
// watcher the size of the set, for a raw watch 1 for a write of the key
// and 0 for its removal.
type Seen struct {
	At   time.Time
	Size int
}

// Sets reads w on its own goroutine until w fails (Stop, or ctx ended),
// and sends on the channel it returns the moment it saw each set and the
// set's size.
func Sets(ctx context.Context, w discovery.Watcher) <-chan Seen {
	seen := make(chan Seen, 1)
	go func() {
		for {
			set, err := w.Next(ctx)
			if err != nil {
				return // Stop or the end of the benchmark
			}
			select {
			case seen <- Seen{time.Now(), len(set)}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return seen
}

// Propagation is the benchmark's loop, its writes made with ctx. Each round either adds or removes
// one key, in turn: first with rawWrite, waiting for rawSeen to report it
// (size 1 once added, 0 once removed), then with write (Register or
// Deregister of an instance of a service of base others), waiting for
// rosterSeen to report the set of the right size. Each time runs from the
// start of the write and from the moment it returned (below zero when a
// watcher saw the change before the write's own response arrived).
// Metrics: roster-ns/op and raw-watch-ns/op, the mean times from the
// start, and propagation/raw-watch, their ratio; after-return-ns/op and
// raw-after-return-ns/op, the mean times from the return;
// seen-before-return and raw-seen-before-return, the share of changes a
// watcher saw before the write returned.
func Propagation(ctx context.Context, b *testing.B, base int,
	rawWrite func(ctx context.Context, add bool) error, rawSeen <-chan Seen,
	write func(ctx context.Context, add bool) error, rosterSeen <-chan Seen,
) {
	b.Helper()
	var side [2]struct {
		fromStart, fromReturn time.Duration
		early                 int
	}
	// measure makes the write of one side and waits for its watcher to
	// see a change of size want.
	measure := func(i int, do func(context.Context, bool) error, add bool, seen <-chan Seen, want int) {
		start := time.Now()
		if err := do(ctx, add); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		s := <-seen
		for ; s.Size != want; s = <-seen {
		}
		side[i].fromStart += s.At.Sub(start)
		side[i].fromReturn += s.At.Sub(returned)
		if s.At.Before(returned) {
			side[i].early++
		}
	}
	const raw, roster = 0, 1
	for i := 0; b.Loop(); i++ {
		add := i%2 == 0
		added := 0
		if add {
			added = 1
		}
		measure(raw, rawWrite, add, rawSeen, added)
		measure(roster, write, add, rosterSeen, base+added)
	}
	n := float64(b.N)
	b.ReportMetric(float64(side[roster].fromStart.Nanoseconds())/n, "roster-ns/op")
	b.ReportMetric(float64(side[raw].fromStart.Nanoseconds())/n, "raw-watch-ns/op")
	b.ReportMetric(float64(side[roster].fromStart)/float64(side[raw].fromStart), "propagation/raw-watch")
	b.ReportMetric(float64(side[roster].fromReturn.Nanoseconds())/n, "after-return-ns/op")
	b.ReportMetric(float64(side[raw].fromReturn.Nanoseconds())/n, "raw-after-return-ns/op")
	b.ReportMetric(float64(side[roster].early)/n, "seen-before-return")
	b.ReportMetric(float64(side[raw].early)/n, "raw-seen-before-return")
}
