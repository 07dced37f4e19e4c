package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bucket returns the key-value bucket and its stream, opening them on
// first use and after they were found gone (creating the bucket if absent
// and checking its settings). While another caller opens them it waits
// until ctx ends.
func (b *Backend) bucket(ctx context.Context) (jetstream.KeyValue, jetstream.Stream, error) {
	b.bmu.Lock()
	kv, stream := b.kv, b.stream
	b.bmu.Unlock()
	if kv != nil {
		return kv, stream, nil
	}
	select {
	case b.bucketSem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("nats: open bucket %q: %w", b.cfg.Bucket, ctx.Err())
	}
	defer func() { <-b.bucketSem }()
	b.bmu.Lock()
	kv, stream = b.kv, b.stream
	b.bmu.Unlock()
	if kv != nil {
		return kv, stream, nil
	}
	kv, stream, err := b.openBucket(ctx)
	if err != nil {
		return nil, nil, err
	}
	b.bmu.Lock()
	b.kv, b.stream = kv, stream
	b.bmu.Unlock()
	return kv, stream, nil
}

// bucketOpen reports whether the bucket's handles are held.
func (b *Backend) bucketOpen() bool {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return b.kv != nil
}

// bucketGone reports whether err, from a request on the bucket, says that
// its stream does not exist (any more): a publish that no stream takes,
// or a request that names a stream the server does not have.
func bucketGone(err error) bool {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, natsgo.ErrStreamNotFound) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound {
		return true
	}
	var legacyErr *natsgo.APIError
	return errors.As(err, &legacyErr) && legacyErr.ErrorCode == natsgo.JSErrCodeStreamNotFound
}

// checkBucket drops the bucket's handles if err says the bucket is gone,
// so that the next use opens (or creates) it again, wakes the watches of
// the old bucket, and reports whether it did.
func (b *Backend) checkBucket(err error) bool {
	if err == nil || !bucketGone(err) {
		return false
	}
	b.dropBucket(err)
	return true
}

// dropBucket drops the bucket's handles, if held, so that the next use
// opens (or creates) the bucket again, and wakes the watches of the old
// one.
func (b *Backend) dropBucket(cause error) {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	if b.kv != nil {
		b.kv, b.stream = nil, nil
		b.bucketLost.Notify()
		if !b.closing.Load() {
			b.log.Warn("the bucket is gone; creating it again", "bucket", b.cfg.Bucket, "error", cause)
		}
	}
}

// errBucketDeleted is dropBucket's cause on the server's advisory.
var errBucketDeleted = errors.New("nats: the server reports the bucket's stream deleted")

// followBucket subscribes to the server's advisories about the bucket's
// stream (one subscription for all of them): its deletion (an operator's
// `nats kv rm`), so that watches of the old bucket, which would otherwise
// wait in silence, start again at once on a new one; and the election of
// its leader, so that a keeper waiting out its backoff after JetStream
// went silent (a whole cluster restarted: the nodes take connections
// seconds before the stream has a leader, and drop requests for it
// meanwhile) tries again the moment the bucket can answer. A connection
// not allowed to read advisories goes without (the watches then notice
// when their consumer cannot be recreated; the keeper, at its next try).
func (b *Backend) followBucket() {
	stream := "KV_" + b.cfg.Bucket
	_, err := b.nc.Subscribe(advisoryPrefix+"*."+stream, func(m *natsgo.Msg) {
		switch m.Subject {
		case advisoryPrefix + "DELETED." + stream:
			b.dropBucket(errBucketDeleted)
		case advisoryPrefix + "LEADER_ELECTED." + stream:
			b.conn.leaderElected()
		}
	})
	if err != nil {
		b.log.Debug("cannot follow the bucket's stream", "error", err)
	}
}

// advisoryPrefix starts the subjects of JetStream's advisories about a
// stream: the event, then the stream's name.
const advisoryPrefix = "$JS.EVENT.ADVISORY.STREAM."

// errLeaderElected ends the opening of the bucket when its stream elects
// a leader meanwhile (see untilElected).
var errLeaderElected = errors.New("nats: the bucket's stream elected a leader while the bucket was being opened; opening it again")

// streamGone asks JetStream whether the bucket's stream exists, after
// writes to the bucket found no stream: it reports true only when
// JetStream answers that it does not (the bucket is then dropped, to be
// created again). A stream without a leader leaves the question
// unanswered; the election ends the wait (untilElected).
func (b *Backend) streamGone() bool {
	ctx, cancel := b.untilElected(b.ctx, b.cfg.RequestTimeout)
	defer cancel()
	_, err := b.js.Stream(ctx, "KV_"+b.cfg.Bucket)
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

// untilElected returns a context that ends after d, with parent, or when
// the bucket's stream next elects a leader (cause errLeaderElected), and
// its cancel, which must be called. A request on a stream without a
// leader may be dropped by the server, never answered: once the stream
// has a leader, waiting out the request's timeout would only delay an
// attempt that can now succeed. It costs a goroutine until cancel: use it
// for requests that can meet a stream without a leader only.
func (b *Backend) untilElected(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	elected := b.conn.elected.Changed()
	ctx, cancelTimeout := context.WithTimeout(parent, d)
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-elected:
			cancel(errLeaderElected)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(context.Canceled)
		cancelTimeout()
	}
}

// lostSignal returns a channel closed when the bucket is next found gone.
func (b *Backend) lostSignal() <-chan struct{} {
	return b.bucketLost.Changed()
}

// openBucket opens the bucket, creating it if absent, and checks its
// settings; bucketSem is held.
func (b *Backend) openBucket(ctx context.Context) (jetstream.KeyValue, jetstream.Stream, error) {
	name := "KV_" + b.cfg.Bucket
	stream, err := b.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := jetstream.KeyValueConfig{
			Bucket:         b.cfg.Bucket,
			Description:    "roster service instances",
			History:        1,
			Storage:        jetstream.FileStorage,
			Replicas:       b.cfg.Replicas,
			LimitMarkerTTL: DefaultMarkerTTL,
		}
		_, err = b.js.CreateKeyValue(ctx, cfg)
		// A server that answers with an error of its own (a 5xx, such as
		// "error creating store for stream" while the deleted bucket's
		// files are still being removed) is up: try again soon rather than
		// after the caller's backoff, which an outage may have grown to
		// 30 s (seen once in TestDeletedBucketCreatedAgain on a loaded
		// machine).
		for delay := 50 * time.Millisecond; serverFault(err) && delay <= time.Second; delay *= 2 {
			select {
			case <-ctx.Done():
			case <-time.After(delay):
				_, err = b.js.CreateKeyValue(ctx, cfg)
				continue
			}
			break
		}
		if err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, nil, fmt.Errorf("nats: create bucket %q: %w", b.cfg.Bucket, unavailable(ctx, err))
		}
		stream, err = b.js.Stream(ctx, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("nats: open bucket %q: %w", b.cfg.Bucket, unavailable(ctx, err))
	}
	sc := stream.CachedInfo().Config
	var missing []string
	if !sc.AllowMsgTTL {
		missing = append(missing, "per-message TTLs (stream AllowMsgTTL)")
	}
	if sc.SubjectDeleteMarkerTTL <= 0 {
		missing = append(missing, "limit markers (bucket LimitMarkerTTL, stream SubjectDeleteMarkerTTL)")
	}
	if !sc.AllowRollup {
		missing = append(missing, "rollups (stream AllowRollup)")
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: bucket %q has no %s", ErrBucketSettings, b.cfg.Bucket, strings.Join(missing, ", no "))
	}
	kv, err := b.js.KeyValue(ctx, b.cfg.Bucket)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: open bucket %q: %w", b.cfg.Bucket, unavailable(ctx, err))
	}
	return kv, stream, nil
}

// serverFault reports whether err is the JetStream API's answer of a
// fault of the server's own (a 5xx code), which a later try may not meet.
func serverFault(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 500
}
