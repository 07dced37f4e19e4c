package etcd

import (
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// revisionGuard notices, from the header every etcd response carries, that
// etcd's history went back: a member wiped (same IDs, revision back to 1)
// or restored from a backup. etcd's revision only grows, so an answer to a
// write or a linearizable read with a revision below one the process had
// already seen from the same cluster before sending the request comes
// from an older history; so does an answer from another cluster. Its cost
// is one compare per response, under a mutex held for nothing else.
//
// Only answers that are linearizable with everything seen before (writes,
// linearizable reads) are checked against the mark taken before the
// request: a lagging member may answer a serializable read or a watch with
// a smaller revision, and a request that was under way while a newer
// revision arrived may answer with an older one. Any header may raise the
// mark, since each reports a revision etcd committed.
//
// The header that reveals a rollback starts a new epoch: the highest
// revision becomes that header's, requests under way from before are no
// longer checked, and changed() is closed, which the Backend's watches
// take as a reason to list again.
type revisionGuard struct {
	mu      sync.Mutex
	cluster uint64 // 0 until a header is seen
	highest int64
	epoch   uint64
	changed chan struct{} // closed at the next rollback
	// onRollback is called, without mu, for each rollback seen, with
	// the revision etcd reported.
	onRollback func(rev int64)
}

// revMark is what the guard knew when a request left.
type revMark struct {
	highest int64
	epoch   uint64
}

func newRevisionGuard(onRollback func(rev int64)) *revisionGuard {
	return &revisionGuard{changed: make(chan struct{}), onRollback: onRollback}
}

// mark returns what the guard knows now; take it before sending a request
// whose answer is checked.
func (g *revisionGuard) mark() revMark {
	g.mu.Lock()
	defer g.mu.Unlock()
	return revMark{highest: g.highest, epoch: g.epoch}
}

// rolledBack returns a channel closed at the next rollback the guard sees.
func (g *revisionGuard) rolledBack() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// check takes the header of a linearizable answer to a request sent after
// m was taken, and reports whether it comes from an older history (or
// another cluster): then it has called onRollback.
func (g *revisionGuard) check(m revMark, h *pb.ResponseHeader) bool {
	return g.checkAt(m, h, m.highest)
}

// checkWrite is check for the answer to a request that wrote: a write
// makes a new revision, above any seen before it was sent.
func (g *revisionGuard) checkWrite(m revMark, h *pb.ResponseHeader) bool {
	return g.checkAt(m, h, m.highest+1)
}

// checkAt reports a rollback when h is of another cluster or its revision
// is below least.
func (g *revisionGuard) checkAt(m revMark, h *pb.ResponseHeader, least int64) bool {
	if h == nil {
		return false
	}
	g.mu.Lock()
	back := g.cluster != 0 && m.epoch == g.epoch &&
		(h.ClusterId != g.cluster || h.Revision < least)
	if back {
		g.rollbackLocked(h)
	} else {
		g.raiseLocked(h)
	}
	g.mu.Unlock()
	if back {
		g.onRollback(h.Revision)
	}
	return back
}

// raise takes the header of any answer (a watch's, a serializable
// read's): it only raises the highest revision seen.
func (g *revisionGuard) raise(h *pb.ResponseHeader) {
	if h == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.raiseLocked(h)
}

// rollback reports a rollback that the caller saw otherwise (a watch
// created at a revision etcd has not reached), with the header that shows
// it.
func (g *revisionGuard) rollback(h *pb.ResponseHeader) {
	g.mu.Lock()
	g.rollbackLocked(h)
	g.mu.Unlock()
	g.onRollback(h.Revision)
}

func (g *revisionGuard) raiseLocked(h *pb.ResponseHeader) {
	switch {
	case g.cluster == 0:
		g.cluster, g.highest = h.ClusterId, h.Revision
	case h.ClusterId == g.cluster && h.Revision > g.highest:
		g.highest = h.Revision
	}
}

func (g *revisionGuard) rollbackLocked(h *pb.ResponseHeader) {
	g.cluster, g.highest = h.ClusterId, h.Revision
	g.epoch++
	close(g.changed)
	g.changed = make(chan struct{})
}
