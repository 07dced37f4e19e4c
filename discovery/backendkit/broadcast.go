package backendkit

import "sync"

// Broadcast tells any number of goroutines that something changed, without
// ever blocking the one that changed it: a channel closed, and replaced by
// a new one, at every change. A goroutine takes the channel with Changed
// before it looks at the state it follows, and waits on the channel
// afterwards: a change made in between has closed that channel already,
// so no change is missed, and several changes before it looks wake it
// once. Count tells how many changes there were. Subscribe gives a
// channel that receives one value per change instead, for a wait that
// outlives one change, such as retry.WakeOn's.
//
// The zero value is ready to use. A Broadcast is safe for concurrent use;
// it must not be copied after first use. Package backendkit's Feed uses
// one for its watchers; a backend can use one for its connection's state,
// say, or for the loss of a store it opened.
type Broadcast struct {
	mu     sync.Mutex
	ch     chan struct{} // closed at the next change; nil until needed
	n      uint64        // changes so far
	closed bool          // Close was called: ch is closed for good
	subs   map[chan struct{}]struct{}
}

// Changed returns a channel that is closed at the next Notify (or at
// Close; after Close, a closed channel).
func (b *Broadcast) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify records a change: it closes the channel Changed returned, which
// wakes every goroutine waiting on it, and starts a new one. It never
// blocks. After Close it does nothing.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if b.ch != nil {
		close(b.ch)
		b.ch = nil // made on demand: a change nobody waits for costs nothing
	}
	b.n++
	for ch := range b.subs {
		select {
		case ch <- struct{}{}:
		default: // a change is waiting there already
		}
	}
}

// Subscribe returns a channel that receives a value at every later Notify
// (changes that come before the value is received make one value), and a
// func that ends the subscription, which must be called once it is no
// longer used. Unlike Changed's, the channel never closes, so a wait on
// it can be repeated: pass it to retry.WakeOn, say, to start a retry at
// once when a connection comes back.
func (b *Broadcast) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = make(map[chan struct{}]struct{})
	}
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, ch)
	}
}

// Count returns how many times Notify recorded a change.
func (b *Broadcast) Count() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Close ends the Broadcast: the channel Changed returned is closed, and
// Changed returns a closed channel from then on, so that no goroutine
// waits for a change that cannot come. Close is idempotent.
func (b *Broadcast) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	close(b.ch)
}
