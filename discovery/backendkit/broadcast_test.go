package backendkit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/roster-sd/roster/discovery/backendkit"
)

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestBroadcastWakesEveryWaiterOnce(t *testing.T) {
	t.Parallel()
	var b backendkit.Broadcast // the zero value is ready
	first := b.Changed()
	if closed(first) {
		t.Fatal("a new Broadcast's channel is closed")
	}
	if again := b.Changed(); again != first {
		t.Error("Changed gave two channels with no change in between")
	}
	var woken sync.WaitGroup
	for range 3 {
		woken.Go(func() { <-first })
	}
	b.Notify()
	done := make(chan struct{})
	go func() { woken.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Notify did not wake every waiter")
	}
	next := b.Changed()
	if next == first || closed(next) {
		t.Fatal("after Notify, Changed gave the closed channel again")
	}
	// Two changes before a look wake once, and are both counted.
	b.Notify()
	b.Notify()
	if !closed(next) || b.Count() != 3 {
		t.Errorf("after two more changes: channel closed %v, Count %d; want true, 3", closed(next), b.Count())
	}
}

func TestBroadcastClose(t *testing.T) {
	t.Parallel()
	var b backendkit.Broadcast
	ch := b.Changed()
	b.Close()
	b.Close()  // idempotent
	b.Notify() // does nothing
	if !closed(ch) || !closed(b.Changed()) {
		t.Error("after Close a channel of the Broadcast is open: its waiters would wait for good")
	}
	if b.Count() != 0 {
		t.Errorf("Count after Close and Notify = %d; want 0", b.Count())
	}
	var unused backendkit.Broadcast
	unused.Close()
	if !closed(unused.Changed()) {
		t.Error("Close before any Changed left Changed's channel open")
	}
}

func TestBroadcastSubscribe(t *testing.T) {
	t.Parallel()
	var b backendkit.Broadcast
	ch, stop := b.Subscribe()
	select {
	case <-ch:
		t.Fatal("a subscription received a value before any change")
	default:
	}
	b.Notify()
	b.Notify() // coalesced with the first
	select {
	case <-ch:
	case <-time.After(waitLong):
		t.Fatal("the subscription did not receive the change")
	}
	select {
	case <-ch:
		t.Fatal("two changes before a receive gave two values")
	default:
	}
	b.Notify()
	select {
	case <-ch:
	default:
		t.Error("the subscription missed a change after a receive")
	}
	stop()
	b.Notify()
	select {
	case <-ch:
		t.Error("a subscription received a change after it ended")
	default:
	}
}
