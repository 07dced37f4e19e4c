package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/roster-sd/roster/retry"
)

// keyWatch follows the Backend's own keys, and only them, so that the
// Backend restores a key someone else deleted and notices a registrar that
// took one over. Its cost grows with the keys this process holds, never with
// the other processes that share the prefix: etcd sends it the events of
// its own keys only.
//
// All the keys share one gRPC watch stream, opened with the client's
// connection, with one etcd watcher per key on it, and one goroutine reads
// them all (clientv3.Watch would add a goroutine per key). When the stream
// breaks, keyWatch opens another and resumes every key from its newest
// change it knows of, which etcd must send again, identical: otherwise
// etcd's history is another one (restored from a backup, and written past
// the revision reached), which the guard reports. That costs one event per
// key per reconnection, and progress requests until etcd says every
// watcher has caught up. The first stream checks alike the keys written
// before it opened (the keeper's first write and the stream start
// together, and etcd may have been replaced in between): at most one
// event per key at start, not paid by a key written on an open stream,
// which is watched from after its write. A key whose change was compacted away resumes,
// unchecked, from the revision it reached; one whose revision was
// compacted resumes from the compaction revision and is checked
// (onCompacted), so that no change is lost between the two.
type keyWatch struct {
	watch  pb.WatchClient
	policy retry.Policy
	log    hclog.Logger
	// onEvent and onCompacted are called without keyWatch's lock, from its
	// goroutines, one call at a time.
	onEvent     func(*mvccpb.Event)
	onCompacted func(path string)
	// guard sees every header of the stream; a watcher that etcd created
	// at a revision it has not reached means etcd's history went back (a
	// member wiped, or restored from a backup), which the guard reports.
	guard *revisionGuard

	mu      sync.Mutex
	keys    map[string]*watchedKey // by etcd key
	byID    map[int64]*watchedKey  // by watch ID on the current stream
	cancels []int64                // watch IDs to cancel on the current stream
	nextID  int64
	kick    chan struct{} // wakes the sender; capacity 1
}

// watchedKey is one key keyWatch follows.
type watchedKey struct {
	path string
	rev  int64 // the next revision to receive
	id   int64 // its watch ID on the current stream; 0 until requested
	// changed is the mod revision of the key's newest change keyWatch
	// knows of (a write of ours, or an event), deleted whether it was a
	// delete; 0 when unknown. A stream opened again resumes the key from
	// there and must get that change again (verify): otherwise etcd's
	// history is not the one the watcher followed (see receive).
	changed int64
	deleted bool
	verify  bool
}

func newKeyWatch(cli *clientv3.Client, policy retry.Policy, log hclog.Logger, guard *revisionGuard,
	onEvent func(*mvccpb.Event), onCompacted func(string)) *keyWatch {
	return &keyWatch{
		watch:       pb.NewWatchClient(cli.ActiveConnection()),
		policy:      policy,
		log:         log,
		onEvent:     onEvent,
		onCompacted: onCompacted,
		guard:       guard,
		keys:        make(map[string]*watchedKey),
		byID:        make(map[int64]*watchedKey),
		kick:        make(chan struct{}, 1),
	}
}

// add follows path from revision rev on; changed is the mod revision of
// the key's newest change as of rev (a put). A key already followed keeps
// its watcher, which delivers the changes since its own revision:
// cancelling and recreating it to skip the echo of a write of ours would
// cost two requests to save one event. Only a key still waiting for its
// watcher moves on to a later rev.
func (w *keyWatch) add(path string, rev, changed int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k := w.keys[path]; k != nil {
		if k.id == 0 && rev > k.rev {
			k.rev, k.changed, k.deleted, k.verify = rev, changed, false, false
		}
		return
	}
	w.keys[path] = &watchedKey{path: path, rev: rev, changed: changed}
	w.wake()
}

// restartFrom watches every key again from revision rev on, on the
// current stream: after etcd's history went back, the revisions the
// watchers had reached belong to a history that is gone.
func (w *keyWatch) restartFrom(rev int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range w.keys {
		w.dropLocked(k)
		k.rev, k.changed, k.verify = rev, 0, false
	}
	w.wake()
}

// remove stops following path.
func (w *keyWatch) remove(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k := w.keys[path]; k != nil {
		w.dropLocked(k)
		delete(w.keys, path)
		w.wake()
	}
}

// dropLocked cancels k's watcher on the current stream, if it has one.
func (w *keyWatch) dropLocked(k *watchedKey) {
	if k.id != 0 {
		delete(w.byID, k.id)
		w.cancels = append(w.cancels, k.id)
		k.id = 0
	}
}

func (w *keyWatch) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run keeps the stream open and every key watched until ctx ends. It never
// gives up: a stream that served is opened again at once (opening waits
// for the connection to be usable); one that failed before it served, after
// the policy's next delay, which starts afresh once a stream has served.
func (w *keyWatch) run(ctx context.Context) {
	w.policy.Forever(ctx, func(ctx context.Context) (bool, error) {
		progressed := false
		for {
			var served atomic.Bool
			err := w.stream(ctx, &served)
			if ctx.Err() != nil || !served.Load() {
				return progressed, err
			}
			progressed = true
			w.log.Debug("own-key watch interrupted, resuming", "error", err)
		}
	}, func(f retry.Failure) {
		w.log.Debug("own-key watch failed, retrying", "retry_in", f.Delay, "error", f.Err)
	})
}

// stream runs one watch stream until it fails or ctx ends; served is set
// once the stream has delivered a response.
func (w *keyWatch) stream(ctx context.Context, served *atomic.Bool) error {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	st, err := w.watch.Watch(sctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	w.mu.Lock()
	// A new stream: every key needs a watcher on it, which checks that
	// etcd still holds the key's newest change known.
	clear(w.byID)
	w.cancels = nil
	for _, k := range w.keys {
		k.id = 0
		k.verify = k.changed != 0
	}
	w.mu.Unlock()
	w.wake()

	recvErr := make(chan error, 1)
	go func() { recvErr <- w.receive(st, served) }()
	// While a watcher checks its key's change, etcd is asked for a
	// progress notification, which it sends once every watcher of the
	// stream has caught up (and drops before): a watcher still waiting
	// for its change then will not get it. The change itself normally
	// comes first, so the first request waits a second: asking at once
	// cost most processes of a fleet one or two requests more in every
	// recovery (Watch progress 0.5-1.6 per process in a restart of 200
	// on a loaded machine), where it only matters after a restore.
	pacer := newProgressPacer(ownKeyProgressDelay)
	defer pacer.stop()
	tick := pacer.C() // nil once no watcher checks
	for {
		if err := w.send(st); err != nil {
			cancel()
			<-recvErr
			return err
		}
		select {
		case <-tick:
			if !w.verifying() {
				pacer.stop()
				tick = nil
				continue
			}
			if err := st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{
				ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
				cancel()
				<-recvErr
				return err
			}
			pacer.again()
		case <-w.kick:
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			cancel()
			<-recvErr
			return ctx.Err()
		}
	}
}

// send asks the stream for a watcher for each key that has none and
// cancels the watchers of keys no longer followed.
func (w *keyWatch) send(st pb.Watch_WatchClient) error {
	w.mu.Lock()
	var reqs []*pb.WatchRequest
	for _, id := range w.cancels {
		reqs = append(reqs, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{
			CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
	}
	w.cancels = nil
	for _, k := range w.keys {
		if k.id != 0 {
			continue
		}
		w.nextID++
		k.id = w.nextID
		w.byID[k.id] = k
		from := k.rev
		if k.verify {
			from = k.changed
		}
		reqs = append(reqs, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
			CreateRequest: &pb.WatchCreateRequest{Key: []byte(k.path), StartRevision: from, WatchId: k.id}}})
	}
	w.mu.Unlock()
	for _, r := range reqs {
		if err := st.Send(r); err != nil {
			return err
		}
	}
	return nil
}

// verifying reports whether a watcher of the current stream still waits
// for its key's change.
func (w *keyWatch) verifying() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range w.keys {
		if k.verify && k.id != 0 {
			return true
		}
	}
	return false
}

// errWatchCanceled reports a watcher that etcd cancelled for a reason
// other than compaction.
var errWatchCanceled = errors.New("etcd cancelled the watch")

// errWatchRefused reports a watcher that etcd refused to create (Created
// and Canceled, with watch ID -1 rather than the one asked for): not
// permitted, or an auth token it no longer accepts.
var errWatchRefused = errors.New("etcd refused to create the watch")

// receive reads the stream until it fails.
func (w *keyWatch) receive(st pb.Watch_WatchClient, served *atomic.Bool) error {
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		served.Store(true)
		w.guard.raise(resp.Header)
		if resp.Created && resp.Canceled && resp.CompactRevision == 0 {
			// The watch ID may be -1, naming no key: the stream fails,
			// and the next one asks again for every key. Opening it
			// fetches a new auth token (clientv3's stream interceptor
			// does), for the refusal may be of the token the stream was
			// opened with.
			served.Store(false) // open the next stream after a backoff
			return fmt.Errorf("%w (watch ID %d): %s", errWatchRefused, resp.WatchId, resp.CancelReason)
		}
		w.mu.Lock()
		if resp.WatchId == clientv3.InvalidWatchID && !resp.Created && !resp.Canceled && len(resp.Events) == 0 {
			// A progress notification: every watcher has caught up, so
			// one still waiting for its key's change will not get it.
			missed := ""
			for _, k := range w.byID {
				if k.verify && k.changed <= resp.Header.GetRevision() {
					missed = k.path
					break
				}
			}
			w.mu.Unlock()
			if missed != "" {
				w.log.Warn("etcd's history is not the one the own-key watch followed (restored from a backup?): checking the instances",
					"key", missed, "revision", resp.Header.GetRevision())
				w.guard.rollback(resp.Header)
			}
			continue
		}
		k := w.byID[resp.WatchId]
		if k == nil {
			w.mu.Unlock()
			continue // a watcher cancelled meanwhile
		}
		path := k.path
		switch {
		case resp.Created && resp.Header != nil && k.rev > resp.Header.Revision+1:
			// Watching from a revision etcd has not reached, so its
			// history went back: it sends nothing until it reaches it,
			// which may be never. The guard has every key watched
			// again from the present (restartFrom), and checked.
			from := k.rev
			w.mu.Unlock()
			w.log.Warn("etcd's history went back (wiped, or restored from a backup): checking the instances",
				"key", path, "watched_from", from, "revision", resp.Header.Revision)
			w.guard.rollback(resp.Header)
			continue
		case resp.CompactRevision != 0 && k.verify && k.rev >= resp.CompactRevision:
			// The change to see again was compacted away, not the
			// revision reached: watch from there, unchecked.
			delete(w.byID, k.id)
			k.id, k.verify = 0, false
			w.mu.Unlock()
			w.wake()
			continue
		case resp.CompactRevision != 0:
			// Changes of the key were compacted away: watch from the
			// oldest revision etcd has, and check the key itself.
			delete(w.byID, k.id)
			k.id, k.rev, k.changed, k.verify = 0, resp.CompactRevision, 0, false
			w.mu.Unlock()
			w.log.Warn("own-key watch fell behind compaction, checking the instance",
				"key", path, "compact_revision", resp.CompactRevision)
			w.onCompacted(path)
			w.wake()
			continue
		case resp.Canceled:
			w.mu.Unlock()
			served.Store(false) // open the next stream after a backoff
			return fmt.Errorf("%w of %s: %s", errWatchCanceled, path, resp.CancelReason)
		}
		if k.verify && len(resp.Events) > 0 {
			// The first change a resumed watcher gets must be the newest
			// it knew of; etcd sends it again, which changes nothing.
			ev := resp.Events[0]
			if ev.Kv.ModRevision != k.changed || (ev.Type == mvccpb.DELETE) != k.deleted {
				w.mu.Unlock()
				w.log.Warn("etcd's history is not the one the own-key watch followed (restored from a backup?): checking the instances",
					"key", path, "change_revision", k.changed, "got_revision", ev.Kv.ModRevision)
				w.guard.rollback(resp.Header)
				continue
			}
			k.verify = false
		}
		for _, ev := range resp.Events {
			k.rev = max(k.rev, ev.Kv.ModRevision+1)
			k.changed, k.deleted = ev.Kv.ModRevision, ev.Type == mvccpb.DELETE
		}
		w.mu.Unlock()
		for _, ev := range resp.Events {
			w.onEvent(ev)
		}
	}
}
