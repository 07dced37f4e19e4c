package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// statusEvent is one status a simulated process reported for one of its
// instances: the process's timeline is the list of them, in order.
type statusEvent struct {
	At       time.Time `json:"at"` // the status's Since
	Instance string    `json:"instance"`
	State    string    `json:"state"`
	Attempt  int       `json:"attempt,omitempty"`
	Err      string    `json:"error,omitempty"`
}

// faultTimes are the moments of a fault, as the bench saw them.
type faultTimes struct {
	Start time.Time `json:"start"` // the cut or the stop began
	// Unreachable is when the registry could no longer be reached by the
	// fleet: the proxies cut, or every member stopped. From then on no
	// process can have its lease confirmed.
	Unreachable time.Time `json:"unreachable"`
	Heal        time.Time `json:"heal"` // the cut healed, or the members started again
	// Usable is when the registry could serve again. After a restart:
	// the first moment after Heal at which the cluster had a leader
	// (etcd: a quorum of the members named one; NATS: JetStream had a
	// meta leader and the bucket's stream a leader), polled in process
	// every 10 ms. After a cut, the registry ran throughout: Heal.
	Usable time.Time `json:"usable"`
	End    time.Time `json:"end"` // the recovery was complete, or the bench gave up
	// Leaders are the embedded cluster's leader changes from Start to
	// End (-1: no leader).
	Leaders []leaderChange `json:"leaders,omitempty"`
}

// Lie is a process that reported registered while its registry had been
// unreachable for longer than its TTL.
type Lie struct {
	Process  int       `json:"process"`
	Instance string    `json:"instance"`
	Since    time.Time `json:"registered_since"`
	// Unconfirmed is how long the registry had been unreachable when the
	// process still said registered.
	Unconfirmed string `json:"unreachable_for"`
}

// findLies checks each process's timeline against the fault: from
// Unreachable + ttl + tolerance until Heal, no process may report
// registered, since its lease could not have been confirmed for a whole
// TTL: no answer from the registry can reach it in that span. tolerance
// allows for the scheduling delay of a busy machine. (Between Heal and
// Usable a process may hear from the registry before the bench's own
// probe does, so a registered reported then is not counted.)
func (f *fleet) findLies(ft faultTimes, ttl, tolerance time.Duration) []Lie {
	deadline := ft.Unreachable.Add(ttl + tolerance)
	if !deadline.Before(ft.Heal) {
		return nil // the registry was back within the TTL
	}
	var lies []Lie
	for _, p := range f.procs {
		p.mu.Lock()
		for _, in := range p.instances {
			var at *statusEvent // the state in effect at the deadline
			for i := range p.timeline {
				ev := &p.timeline[i]
				if ev.Instance != in.ID {
					continue
				}
				if !ev.At.After(deadline) {
					at = ev
					continue
				}
				if ev.At.Before(ft.Heal) && ev.State == discovery.StateRegistered.String() {
					at = ev // registered after the deadline, before the heal
					break
				}
			}
			if at != nil && at.State == discovery.StateRegistered.String() {
				when := deadline
				if at.At.After(when) {
					when = at.At
				}
				lies = append(lies, Lie{Process: p.index, Instance: in.ID, Since: at.At,
					Unconfirmed: when.Sub(ft.Unreachable).Round(time.Millisecond).String()})
			}
		}
		p.mu.Unlock()
	}
	return lies
}

// leaderChange is a change of the embedded cluster's leader: the index of
// the member that leads (see registry.leader), or -1 while there is none.
type leaderChange struct {
	At     time.Time `json:"at"`
	Leader int       `json:"leader"`
}

// leaderLog polls the embedded cluster's leader every 10 ms, in process
// (no client, so no reconnect delay), and records each change, until
// stopped.
type leaderLog struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	changes []leaderChange
}

func startLeaderLog(leader func() int) *leaderLog {
	ctx, cancel := context.WithCancel(context.Background())
	// The first sample is taken before the fault starts, so that the
	// leader it stops is on record.
	last := leader()
	l := &leaderLog{cancel: cancel, done: make(chan struct{}), changes: []leaderChange{{At: time.Now(), Leader: last}}}
	go func() {
		defer close(l.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if i := leader(); i != last {
				last = i
				l.mu.Lock()
				l.changes = append(l.changes, leaderChange{At: time.Now(), Leader: i})
				l.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return l
}

// stop ends the polling and returns the changes recorded.
func (l *leaderLog) stop() []leaderChange {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes)
}

// processRecord is one process in the --timeline file.
type processRecord struct {
	Index int `json:"index"`
	// RecoveredAt is when every instance was registered again after the
	// fault; absent for a straggler.
	RecoveredAt *time.Time `json:"recovered_at,omitempty"`
	FellBack    int        `json:"fell_back,omitempty"`
	// RecoveryRequests are the requests the process sent from the heal
	// until it was back (until the end of the window for a straggler).
	RecoveryRequests map[string]int64 `json:"recovery_requests,omitempty"`
	Events           []statusEvent    `json:"events"`
}

// timelineFile is what --timeline writes.
type timelineFile struct {
	TTL       string          `json:"ttl"`
	Fault     *faultTimes     `json:"fault,omitempty"`
	Lies      []Lie           `json:"lies,omitempty"`
	Processes []processRecord `json:"processes"`
}

// writeTimeline writes every process's timeline, and the fault's moments,
// as JSON to path.
func (f *fleet) writeTimeline(path string, ttl time.Duration, ft *faultTimes, lies []Lie, healReqs []map[string]int64) error {
	out := timelineFile{TTL: ttl.String(), Fault: ft, Lies: lies}
	for i, p := range f.procs {
		p.mu.Lock()
		rec := processRecord{Index: p.index, FellBack: p.fellBack, Events: slices.Clone(p.timeline)}
		if !p.recoveredAt.IsZero() {
			at := p.recoveredAt
			rec.RecoveredAt = &at
		}
		if healReqs != nil {
			rec.RecoveryRequests = p.recoveryRequestsLocked(healReqs[i])
		}
		p.mu.Unlock()
		out.Processes = append(out.Processes, rec)
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write --timeline: %w", err)
	}
	return nil
}

// recoveryRequestsLocked returns the requests p sent from the heal (when
// it had sent atHeal) until it was registered again, or until now if it
// is not.
func (p *simProcess) recoveryRequestsLocked(atHeal map[string]int64) map[string]int64 {
	upTo := p.recoveredReqs
	if upTo == nil {
		upTo = p.traffic.methods()
	}
	out := make(map[string]int64)
	for m, n := range upTo {
		if d := n - atHeal[m]; d > 0 {
			out[m] = d
		}
	}
	return out
}

// cpuBurner keeps n goroutines spinning, to measure the fleet on a busy
// machine: they compete with the fleet (and the embedded cluster) for
// the Go scheduler's processors, as the work of a real application does.
type cpuBurner struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startCPUBurn starts n spinning goroutines (none when n is 0).
func startCPUBurn(n int) *cpuBurner {
	ctx, cancel := context.WithCancel(context.Background())
	b := &cpuBurner{cancel: cancel}
	for range n {
		b.wg.Go(func() {
			x := uint64(1)
			for ctx.Err() == nil {
				for range 100_000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		})
	}
	return b
}

// Close stops the spinning goroutines and waits for them.
func (b *cpuBurner) Close() {
	b.cancel()
	b.wg.Wait()
}

// leaderAfter returns the first moment at or after t at which changes
// say a leader was known, or zero.
func leaderAfter(changes []leaderChange, t time.Time) time.Time {
	for i, c := range changes {
		if c.Leader < 0 {
			continue
		}
		if !c.At.Before(t) {
			return c.At
		}
		if i+1 == len(changes) || !changes[i+1].At.Before(t) {
			return t // a leader already at t
		}
	}
	return time.Time{}
}
