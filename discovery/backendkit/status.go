package backendkit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/roster-sd/roster/discovery"
)

// StatusBoard records the status of a backend's registrations and fans
// changes out to subscribers. A backend holds one and implements
// [discovery.StatusReporter] by forwarding to it, setting a status each
// time a registration changes state. All its methods are safe for
// concurrent use and none of them blocks on a subscriber.
//
// The zero value is not usable; call NewStatusBoard.
type StatusBoard struct {
	now func() time.Time

	mu      sync.Mutex
	current map[discovery.Key]discovery.Status
	subs    map[*subscription]struct{}
	closed  bool
}

var _ discovery.StatusReporter = (*StatusBoard)(nil)

// NewStatusBoard returns an empty board.
func NewStatusBoard() *StatusBoard {
	return &StatusBoard{
		now:     time.Now,
		current: make(map[discovery.Key]discovery.Status),
		subs:    make(map[*subscription]struct{}),
	}
}

// Set records st as the status of st.Instance and notifies subscribers. A
// zero Since is set to now. Set fills in st.WasRegistered: true from the
// first time the registration is discovery.StateRegistered until it is
// deregistered. Setting the state a registration is already in
// with the same attempt and cause is ignored and notifies no one.
// discovery.StateDeregistered is delivered to subscribers and then
// forgotten, so Status reports discovery.ErrNotRegistered afterwards.
func (b *StatusBoard) Set(st discovery.Status) {
	st.Instance = st.Instance.Clone()
	key := st.Instance.Key()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	prev, ok := b.current[key]
	if !ok && st.State == discovery.StateDeregistered {
		return // already gone
	}
	if ok && prev.State == st.State && prev.Attempt == st.Attempt && sameErr(prev.Err, st.Err) &&
		prev.Instance.Equal(st.Instance) {
		return
	}
	if st.Since.IsZero() {
		st.Since = b.now()
	}
	st.WasRegistered = st.State == discovery.StateRegistered || (ok && prev.WasRegistered)
	if st.State == discovery.StateDeregistered {
		delete(b.current, key)
	} else {
		b.current[key] = st
	}
	for sub := range b.subs {
		sub.push(st)
	}
}

// Status implements [discovery.StatusReporter].
func (b *StatusBoard) Status(service, id string) (discovery.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.current[discovery.Key{Service: service, ID: id}]
	if !ok {
		return discovery.Status{}, fmt.Errorf("%w: %s/%s", discovery.ErrNotRegistered, service, id)
	}
	st.Instance = st.Instance.Clone()
	return st, nil
}

// Statuses implements [discovery.StatusReporter].
func (b *StatusBoard) Statuses() []discovery.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshotLocked()
}

func (b *StatusBoard) snapshotLocked() []discovery.Status {
	out := make([]discovery.Status, 0, len(b.current))
	for _, st := range b.current {
		st.Instance = st.Instance.Clone()
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y discovery.Status) int { return discovery.CompareInstances(x.Instance, y.Instance) })
	return out
}

// SubscribeStatus implements [discovery.StatusReporter]. The subscription
// holds at most one pending status per registration: when the subscriber
// falls behind, an older pending status of a registration is replaced by
// the newer one, so a slow subscriber may skip intermediate states but
// always gets the latest state of every registration, and the board never
// waits for it. On a closed board the subscription yields nothing and Next
// returns an error wrapping [discovery.ErrClosed].
func (b *StatusBoard) SubscribeStatus() discovery.StatusSubscription {
	sub := &subscription{
		board:   b,
		pending: make(map[discovery.Key]discovery.Status),
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
// pending and then an error wrapping [discovery.ErrClosed]. Later Set calls
// are ignored. Close is idempotent.
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

func (b *StatusBoard) unsubscribe(sub *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, sub)
}

// subscription is the board's discovery.StatusSubscription: one pending
// status per registration, in the order registrations changed.
type subscription struct {
	board  *StatusBoard
	notify chan struct{}

	mu      sync.Mutex
	pending map[discovery.Key]discovery.Status
	order   []discovery.Key
	closed  bool
}

func (s *subscription) push(st discovery.Status) {
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

func (s *subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.wake()
}

func (s *subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next implements discovery.StatusSubscription.
func (s *subscription) Next(ctx context.Context) (discovery.Status, error) {
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
			return discovery.Status{}, fmt.Errorf("status subscription: %w", discovery.ErrClosed)
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return discovery.Status{}, ctx.Err()
		}
	}
}

// Stop implements discovery.StatusSubscription: it drops what is pending.
func (s *subscription) Stop() {
	s.board.unsubscribe(s)
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
