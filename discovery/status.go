package discovery

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// State is the phase of one registration's life.
type State int

// The states of a registration. A registration starts Registering, becomes
// Registered once the registry holds it, moves between Registered,
// Retrying, Lost and Conflict while faults come and go, and ends
// Deregistered.
const (
	// StateRegistering: the first write has not completed yet.
	StateRegistering State = iota + 1
	// StateRegistered: the registry holds the instance and the backend is
	// keeping it there. The only state in which a readiness probe should
	// pass.
	StateRegistered
	// StateRetrying: keeping the instance published failed; the backend
	// retries after Status.RetryIn (attempt Status.Attempt, cause
	// Status.Err). The registry may still hold the instance.
	StateRetrying
	// StateLost: the registry no longer holds the instance (its lease
	// expired, or someone removed it) and the backend is restoring it.
	StateLost
	// StateConflict: another registrar has published the same service and
	// ID and owns it now; this backend takes it back once it is gone.
	// Status.Err wraps ErrConflict.
	StateConflict
	// StateDeregistered: the instance was removed by Deregister or Close.
	// It is the final state.
	StateDeregistered
)

var stateNames = [...]string{
	StateRegistering:  "registering",
	StateRegistered:   "registered",
	StateRetrying:     "retrying",
	StateLost:         "lost",
	StateConflict:     "conflict",
	StateDeregistered: "deregistered",
}

// String returns the lower-case name of the state, e.g. "retrying".
func (s State) String() string {
	if s > 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Status is the state of one registration at one moment.
type Status struct {
	// Instance is the registered instance (a copy).
	Instance Instance
	// State is the registration's phase.
	State State
	// Attempt counts the failed attempts of the current retry sequence,
	// from 1; zero outside StateRetrying.
	Attempt int
	// RetryIn is the delay before the next attempt in StateRetrying.
	RetryIn time.Duration
	// Err is the cause of StateRetrying, StateLost or StateConflict.
	Err error
	// Since is when the registration entered State.
	Since time.Time
}

// String describes the status in one line, e.g.
// "payments/p-1 retrying (attempt 2, next in 2s): connection refused".
func (s Status) String() string {
	out := s.Instance.Key().String() + " " + s.State.String()
	if s.State == StateRetrying {
		out += fmt.Sprintf(" (attempt %d, next in %v)", s.Attempt, s.RetryIn)
	}
	if s.Err != nil {
		out += ": " + s.Err.Error()
	}
	return out
}

// StatusBoard records the status of a backend's registrations and fans
// changes out to subscribers. Backends embed or hold one to implement
// StatusReporter; all its methods are safe for concurrent use and none of
// them blocks on a subscriber.
//
// The zero value is not usable; call NewStatusBoard.
type StatusBoard struct {
	now func() time.Time

	mu      sync.Mutex
	current map[Key]Status
	subs    map[*StatusSubscription]struct{}
	closed  bool
}

// NewStatusBoard returns an empty board.
func NewStatusBoard() *StatusBoard {
	return &StatusBoard{
		now:     time.Now,
		current: make(map[Key]Status),
		subs:    make(map[*StatusSubscription]struct{}),
	}
}

// Set records st as the status of st.Instance and notifies subscribers. A
// zero Since is set to now. Setting the state a registration is already in
// with the same attempt and cause is ignored and notifies no one.
// StateDeregistered is delivered to subscribers and then forgotten, so Status
// reports ErrNotRegistered afterwards.
func (b *StatusBoard) Set(st Status) {
	st.Instance = st.Instance.Clone()
	key := st.Instance.Key()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	prev, ok := b.current[key]
	if !ok && st.State == StateDeregistered {
		return // already gone
	}
	if ok && prev.State == st.State && prev.Attempt == st.Attempt && sameErr(prev.Err, st.Err) &&
		prev.Instance.Equal(st.Instance) {
		return
	}
	if st.Since.IsZero() {
		st.Since = b.now()
	}
	if st.State == StateDeregistered {
		delete(b.current, key)
	} else {
		b.current[key] = st
	}
	for sub := range b.subs {
		sub.push(st)
	}
}

// Status implements StatusReporter.
func (b *StatusBoard) Status(service, id string) (Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.current[Key{Service: service, ID: id}]
	if !ok {
		return Status{}, fmt.Errorf("%w: %s/%s", ErrNotRegistered, service, id)
	}
	st.Instance = st.Instance.Clone()
	return st, nil
}

// Statuses implements StatusReporter.
func (b *StatusBoard) Statuses() []Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshotLocked()
}

func (b *StatusBoard) snapshotLocked() []Status {
	out := make([]Status, 0, len(b.current))
	for _, st := range b.current {
		st.Instance = st.Instance.Clone()
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y Status) int { return CompareInstances(x.Instance, y.Instance) })
	return out
}

// SubscribeStatus implements StatusReporter. On a closed board the
// subscription yields nothing and Next returns ErrClosed.
func (b *StatusBoard) SubscribeStatus() *StatusSubscription {
	sub := &StatusSubscription{
		board:   b,
		pending: make(map[Key]Status),
		notify:  make(chan struct{}, 1),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		sub.closed = true
		return sub
	}
	for _, st := range b.snapshotLocked() {
		sub.push(st)
	}
	b.subs[sub] = struct{}{}
	return sub
}

// Close ends every subscription: each one's Next returns the statuses still
// pending and then ErrClosed. Later Set calls are ignored. Close is
// idempotent.
func (b *StatusBoard) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for sub := range b.subs {
		sub.close()
	}
	clear(b.subs)
}

func (b *StatusBoard) unsubscribe(sub *StatusSubscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, sub)
}

// StatusSubscription delivers status changes to one subscriber. It holds
// at most one pending status per registration: when the subscriber falls
// behind, an older pending status of a registration is replaced by the
// newer one, so a slow subscriber may skip intermediate states but always
// gets the latest state of every registration, and the backend never
// waits for it.
type StatusSubscription struct {
	board  *StatusBoard
	notify chan struct{}

	mu      sync.Mutex
	pending map[Key]Status
	order   []Key
	closed  bool
}

func (s *StatusSubscription) push(st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	key := st.Instance.Key()
	if _, ok := s.pending[key]; !ok {
		s.order = append(s.order, key)
	}
	s.pending[key] = st
	s.wake()
}

func (s *StatusSubscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.wake()
}

func (s *StatusSubscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the next status change, in the order registrations changed,
// blocking until there is one. It returns ctx's error when ctx ends, and an
// error wrapping ErrClosed once the subscription is stopped or the backend
// is closed and nothing is pending.
func (s *StatusSubscription) Next(ctx context.Context) (Status, error) {
	for {
		s.mu.Lock()
		if len(s.order) > 0 {
			key := s.order[0]
			s.order = s.order[1:]
			st := s.pending[key]
			delete(s.pending, key)
			s.mu.Unlock()
			return st, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return Status{}, fmt.Errorf("status subscription: %w", ErrClosed)
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Status{}, ctx.Err()
		}
	}
}

// Stop ends the subscription and drops what is pending; a blocked Next
// returns ErrClosed. It is idempotent.
func (s *StatusSubscription) Stop() {
	if s.board != nil {
		s.board.unsubscribe(s)
	}
	s.mu.Lock()
	clear(s.pending)
	s.order = nil
	s.mu.Unlock()
	s.close()
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}
