package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/maintkit"
	"github.com/roster-sd/roster/retry"
)

// errDisconnected is the cause watchers see while the connection is down.
var errDisconnected = errors.New("nats: connection lost")

// errBucketLost is read's error when the bucket is found gone, and
// errBucketRecreated the cause of the outage watchers then see: the next
// sets come from a new bucket, whose sequences started again.
var (
	errBucketLost      = errors.New("nats: the bucket is gone")
	errBucketRecreated = errors.New("nats: the bucket was deleted and made again; its revisions start again")
	errHistoryRewound  = errors.New("nats: the bucket went back to older sequences (a server restored from a backup?); its revisions start again")
)

// Resolve implements discovery.Resolver: it reads the last value of every
// key of service with one key-value watch (the bucket's own listing), up to
// the service's last write stored when the listing ends (one more
// request), and returns the instances sorted by ID. A service name that cannot be a key
// has no instances. Errors wrap discovery.ErrUnavailable when NATS cannot
// be reached, and discovery.ErrClosed after Close.
func (b *Backend) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	set, _, err := b.ResolveRevision(ctx, service)
	return set, err
}

// ResolveRevision implements discovery.RevisionResolver: Resolve, with the
// service's revision, the stream sequence of the last message on one of
// its keys that the read took in (0 if there is none). The Backend's
// Watchers give the same with each set. Sequences restart when the bucket
// is deleted and made again: the Watchers then report an outage first.
func (b *Backend) ResolveRevision(ctx context.Context, service string) ([]discovery.Instance, uint64, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, 0, fmt.Errorf("nats: resolve: %w", err)
	}
	if err := b.usable(ctx, "resolve", service); err != nil {
		return nil, 0, err
	}
	filter, err := serviceFilter(service)
	if err != nil {
		return []discovery.Instance{}, 0, nil
	}
	if err := b.connected(); err != nil {
		return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, err)
	}
	var (
		set       []discovery.Instance
		rev       uint64
		recreated bool
	)
	// A read that JetStream leaves unanswered (see errStalled) is made
	// again, until ctx ends; any other failure is returned at once.
	err = resolveRetry.Do(ctx, func(ctx context.Context) error {
		if err := b.connected(); err != nil {
			return retry.Permanent(fmt.Errorf("nats: resolve %q: %w", service, err))
		}
		s, r, err := b.resolve(ctx, service, filter)
		if b.checkBucket(err) && !recreated {
			// The bucket is gone (a server restarted without its data, a
			// deleted bucket): open, or create, it again and read that.
			recreated = true
			s, r, err = b.resolve(ctx, service, filter)
		}
		switch {
		case err == nil:
			set, rev = s, r
			return nil
		case errors.Is(err, errStalled):
			b.log.Debug("resolve unanswered, reading again", "service", service, "error", err)
			return err
		}
		return retry.Permanent(err)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, err)
		}
		return nil, 0, err
	}
	return set, rev, nil
}

// errStalled ends one attempt of Resolve that went a third of
// RequestTimeout without an answer to its requests or a value from its
// watch: JetStream drops, never answers, an API request (the stream's
// info, a consumer's creation, the last sequence) that reaches a node
// while the stream's or its consumer's leader is being elected, and the
// client would wait the request's whole context, the caller's (after a
// whole-cluster restart, a fresh Backend's Resolve waited out its 30 s
// while the cluster answered again; TestResolveAfterWholeClusterRestart).
var errStalled = errors.New("nats: JetStream left the read unanswered (a request lost during a leader election?)")

// resolveRetry spaces Resolve's attempts after one went unanswered:
// short, since a new request is usually answered at once.
var resolveRetry = retry.Policy{Base: 50 * time.Millisecond, Max: time.Second, Jitter: 0.2}

// stallTimeout is how long one attempt of Resolve may go without progress
// (see errStalled).
func (b *Backend) stallTimeout() time.Duration { return b.cfg.RequestTimeout / 3 }

// resolve is Resolve's one attempt, on the keys matching filter; it
// returns the set and its revision.
func (b *Backend) resolve(parent context.Context, service, filter string) (_ []discovery.Instance, _ uint64, err error) {
	// Every request and every value of the watch is progress; an attempt
	// that makes none for stallTimeout is cut short (errStalled).
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	step := b.stallTimeout()
	stall := time.AfterFunc(step, func() { cancel(errStalled) })
	defer stall.Stop()
	progress := func() { stall.Reset(step) }
	defer func() {
		if err != nil && parent.Err() == nil && errors.Is(context.Cause(ctx), errStalled) {
			err = fmt.Errorf("nats: resolve %q: %w: %w (%w)", service, discovery.ErrUnavailable, errStalled, err)
		}
	}()
	_, changed, _ := b.conn.get()
	kv, _, err := b.bucket(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, err)
	}
	progress()
	// Deletes are delivered too: Delta counts them (see below).
	w, err := kv.Watch(ctx, filter)
	if err != nil {
		return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, unavailable(ctx, err))
	}
	defer stopWatcher(w)
	progress()
	set := make(map[string]discovery.Instance)
	// The watch marks the end of the current values (nil) once it has
	// delivered as many as were pending when it started. A key renewed
	// meanwhile loses the message that was pending and gets a new one
	// further on, which may come just after the mark: so at the mark,
	// Resolve asks for the sequence of the service's last stored write,
	// and reads on until the watch has delivered it (or a later one).
	var seen, target uint64 // the last sequence delivered; the one to reach
	listed := false
	for {
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, ctx.Err())
		case <-changed:
			return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, unavailable(ctx, errDisconnected))
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, ctx.Err())
				}
				return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, unavailable(ctx, errDisconnected))
			}
			progress()
			if e == nil {
				if target, err = b.lastSequence(ctx, filter); err != nil {
					return nil, 0, fmt.Errorf("nats: resolve %q: %w", service, unavailable(ctx, err))
				}
				progress()
				listed = true
			} else {
				b.apply(set, e)
				seen = max(seen, e.Revision())
			}
			if listed && seen >= target {
				// The set holds every message on the service's keys up
				// to seen: that is its revision.
				return maintkit.Merge(discovery.NormalizeSet(values(set))), seen, nil
			}
		}
	}
}

// lastSequence returns the sequence of the last message stored for the
// keys matching filter, or 0 if there is none, as the stream's leader
// has it: a direct get, which any replica answers (the client's own
// node's first), may come from one a few writes behind, and a read that
// stops at that sequence misses the keys renewed after it (fleetsim's
// TestNATSRestart read 2 of 4 keys while every node held the 4, the
// fleet renewing them all at once after the restart).
func (b *Backend) lastSequence(ctx context.Context, filter string) (uint64, error) {
	if _, _, err := b.bucket(ctx); err != nil {
		return 0, err
	}
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{b.prefix + filter})
	if err != nil {
		return 0, err
	}
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+b.cfg.Bucket, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("nats: last message of %s: %w", filter, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, nil
	case resp.Error != nil:
		return 0, resp.Error
	case resp.Message == nil:
		return 0, fmt.Errorf("nats: last message of %s: an answer without a message", filter)
	}
	return resp.Message.Seq, nil
}

// usable reports why b cannot serve a call now, if it cannot.
func (b *Backend) usable(ctx context.Context, op, service string) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("nats: %s %q: %w", op, service, discovery.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("nats: %s %q: %w", op, service, ctx.Err())
	}
	return nil
}

// apply records entry e in set, keyed by bucket key.
func (b *Backend) apply(set map[string]discovery.Instance, e jetstream.KeyValueEntry) {
	if b.applyReserved(set, e) { // maint.go
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(set, e.Key())
		return
	}
	in, err := decodeEntry(e.Key(), e.Value())
	if err != nil {
		if b.skipped.First(e.Key(), int64(e.Revision())) { // once per revision, not per read
			b.log.Warn("skipping a value that is not a valid instance", "key", e.Key(), "revision", e.Revision(), "error", err)
		}
		delete(set, e.Key())
		return
	}
	set[e.Key()] = in
}

func values(set map[string]discovery.Instance) []discovery.Instance {
	out := make([]discovery.Instance, 0, len(set))
	for _, in := range set {
		out = append(out, in)
	}
	return out
}

// stopWatcher stops w and waits, a bounded time, for its channel to close,
// so that no delivery is left blocked on it.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}

// Watch implements discovery.Resolver. Watchers of one service share one
// key-value watch of the service's keys, which delivers the current set
// and then every change; values rewritten by renewals leave the set
// unchanged and wake no watcher. When the connection drops, every
// watcher's Next reports discovery.ErrUnavailable once; when it is back,
// the watch starts again and Next returns the exact current set. The
// Watcher lives until Stop, until ctx ends or until Close.
func (b *Backend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("nats: watch: %w", err)
	}
	if err := b.usable(ctx, "watch", service); err != nil {
		return nil, err
	}
	return b.group.Watch(ctx, service, nil), nil
}

// startFollowing is the FeedGroup's start hook: one goroutine per watched
// service, stopped with its last watcher or on Close.
func (b *Backend) startFollowing(service string, f *backendkit.Feed) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.follow(ctx, service, f)
	}()
	return func() {
		cancel()
		<-done
	}
}

// follow publishes the sets of service on f until ctx ends.
func (b *Backend) follow(ctx context.Context, service string, f *backendkit.Feed) {
	filter, err := serviceFilter(service)
	if err != nil {
		f.Publish(nil) // no instance can have this name
		<-ctx.Done()
		return
	}
	var h history
	for ctx.Err() == nil {
		// One retry sequence, from a fresh backoff, until a watch ends
		// without failing (the connection changed, the bucket was lost):
		// then start over at once. A wait ends as soon as the connection
		// comes back (or drops), and so does a watch.
		wake, unsubscribe := b.conn.changes.Subscribe()
		recreated := false
		_ = b.cfg.Retry.Do(ctx, func(ctx context.Context) error {
			err := b.watchOnce(ctx, filter, f, &h)
			if b.checkBucket(err) && !recreated {
				// The bucket is gone: open, or create, it again at once.
				recreated = true
				err = b.watchOnce(ctx, filter, f, &h)
			}
			return err
		}, retry.OnFailure(func(fl retry.Failure) {
			f.Fail(fl.Err)
			b.log.Debug("service watch failed, retrying", "service", service, "retry_in", fl.Delay, "error", fl.Err)
		}), retry.WakeOn(wake))
		unsubscribe()
	}
}

// history is what follow knows of the history that f's sets come from,
// so that a watch started again tells a new one (whose sequences compare
// with none of the old one's) and calls f.Reset.
type history struct {
	// created is when the bucket of f's sets was created; zero before the
	// first set and after a Reset. A bucket created at another time is a
	// new one (deleted and made again, on a server wiped, say).
	created time.Time
	// reached is the highest revision published on f in this history. A
	// watch started again whose first set is older went back in time: a
	// server restored from a backup keeps its bucket but goes back to the
	// backup's sequences. (So can a service whose last messages were
	// removal markers that expired meanwhile, the markers of keys the
	// old set did not hold either: the Reset then reports an outage that
	// was not needed, once.)
	reached uint64
}

// watchOnce is one watch of follow's: it returns an error at once while
// the connection is down, else watches the service and publishes its sets
// on f until the watch ends. It returns nil when the watch ended with the
// connection's change, or with the bucket (after a Reset of f, since the
// next sets come from a new bucket), and why it failed otherwise.
func (b *Backend) watchOnce(ctx context.Context, filter string, f *backendkit.Feed, h *history) error {
	_, changed, _ := b.conn.get()
	if err := b.connected(); err != nil {
		return err
	}
	lost := b.lostSignal()
	kv, stream, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	if c := stream.CachedInfo().Created; !h.created.IsZero() && !c.Equal(h.created) {
		f.Reset(errBucketRecreated)
		h.reached = 0
	}
	h.created = stream.CachedInfo().Created
	w, err := kv.Watch(ctx, filter)
	if err != nil {
		return err
	}
	err = b.read(ctx, w, f, changed, lost, filter, h)
	stopWatcher(w)
	if errors.Is(err, errBucketLost) {
		// No revision of the next sets compares with the old bucket's.
		f.Reset(errBucketRecreated)
		*h = history{}
		return nil
	}
	return err
}

// read applies w's entries to a fresh set and publishes it on f, at the
// sequence of the last entry applied, once the current values are in and
// after every change, until ctx ends, the connection changes state or the
// watch ends (it then returns nil), the bucket is found gone (lost closes:
// it returns errBucketLost), or it cannot read the service's last
// sequence (it returns why). A first set older than h.reached resets f
// (see history).
func (b *Backend) read(ctx context.Context, w jetstream.KeyWatcher, f *backendkit.Feed, changed, lost <-chan struct{},
	filter string, h *history) error {
	set := make(map[string]discovery.Instance)
	// As in Resolve: the first set goes out once the watch has delivered
	// the service's last write stored at the end-of-values mark, so that
	// a key renewed while the watch listed is not missing from it.
	var seen, target uint64
	current := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			return nil
		case <-lost:
			return errBucketLost
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				last, err := b.lastSequence(ctx, filter)
				if err != nil {
					return unavailable(ctx, err)
				}
				target, current = last, true
			} else {
				b.apply(set, e)
				seen = max(seen, e.Revision())
			}
			if current && seen >= target {
				if seen < h.reached {
					f.Reset(errHistoryRewound)
				}
				h.reached = seen
				// A renewal leaves the set as it was and only moves its
				// revision on.
				f.PublishAt(maintkit.Merge(values(set)), seen)
			}
		}
	}
}
