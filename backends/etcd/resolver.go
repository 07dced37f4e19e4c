package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/backendkit"
	"github.com/roster-sd/roster/internal/maintkit"
	"github.com/roster-sd/roster/retry"
)

// errWatchEnded: etcd's watch channel closed without an error.
var errWatchEnded = errors.New("etcd watch ended")

// errHistoryRewound is the cause of the outage a service's watchers report
// when etcd's history went back (wiped, or restored from a backup) and its
// revisions compare with none before.
var errHistoryRewound = errors.New("etcd's history went back (wiped, or restored from a backup); its revisions start again")

// startFollow is the start hook of the Backend's watch group: when a
// service gets its first Watcher it starts the goroutine that keeps the
// service's feed up to date, and returns the func that cancels it, which
// the group runs when the last Watcher has stopped. The group runs it from
// Watch with the table locked and open (registrations.startIfOpen), so the
// goroutine never races with Close's wait.
func (b *Backend) startFollow(service string, feed *backendkit.Feed) (stop func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	b.wg.Add(1)
	go b.follow(ctx, service, feed)
	b.conn.start(b.ctx, &b.wg)
	return cancel
}

// servicePrefix is the prefix of a service's keys, with its trailing slash
// so that "pay" does not match "payments".
func (b *Backend) servicePrefix(service string) string {
	return b.cfg.Prefix + "/" + service + "/"
}

// Resolve implements discovery.Resolver with one range read of the
// service's keys: linearizable unless Config.SerializableReads is set.
func (b *Backend) Resolve(ctx context.Context, service string) ([]discovery.Instance, error) {
	set, _, err := b.ResolveRevision(ctx, service)
	return set, err
}

// ResolveRevision implements discovery.RevisionResolver: Resolve, with
// the etcd revision of the read. The Backend's Watchers give, with each
// set, the revision up to which they have applied etcd's events.
func (b *Backend) ResolveRevision(ctx context.Context, service string) ([]discovery.Instance, uint64, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, 0, fmt.Errorf("etcd: resolve: %w", err)
	}
	if b.isClosed() {
		return nil, 0, fmt.Errorf("etcd: resolve %s: %w", service, discovery.ErrClosed)
	}
	set, rev, err := b.list(ctx, service)
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: resolve %s: %w", service, err)
	}
	return set, uint64(rev), nil
}

func (b *Backend) isClosed() bool { return b.regs.isClosed() }

// list reads the service's instances and the revision they were read at.
func (b *Backend) list(ctx context.Context, service string) ([]discovery.Instance, int64, error) {
	mark := b.restorer.guard.mark()
	resp, err := b.cli.Get(ctx, b.servicePrefix(service), b.readOpts(clientv3.WithPrefix())...)
	if err != nil {
		return nil, 0, err
	}
	b.checkRead(mark, resp.Header)
	return maintkit.Merge(b.decodeAll(service, resp.Kvs)), resp.Header.Revision, nil
}

// decodeAll returns the instances of service among kvs, normalized.
func (b *Backend) decodeAll(service string, kvs []*mvccpb.KeyValue) []discovery.Instance {
	set := make([]discovery.Instance, 0, len(kvs))
	for _, kv := range kvs {
		if in, ok := b.decode(service, kv); ok {
			set = append(set, in)
		}
	}
	return discovery.NormalizeSet(set)
}

// listing is what a watch's list read: the set, and where in etcd's
// history it was read.
type listing struct {
	set     []discovery.Instance
	rev     int64  // revision of the read
	cluster uint64 // ID of the cluster that answered
	history string // value of the history key; "" if etcd has none we may write
	last    anchor // the newest change among the service's keys
}

// anchor is a change of a service's keys that a watch applied, the newest
// it knows of: a resumed watch starts at its revision and must see it
// again, identical, or etcd's history is not the one the watch followed
// (see watchFrom). rev is 0 when the watch knows of none.
type anchor struct {
	key     string
	rev     int64 // its mod revision
	deleted bool
	create  int64 // create revision and version of a put
	version int64
	value   string
}

// anchorOf returns the anchor of a put or delete of kv.
func anchorOf(kv *mvccpb.KeyValue, deleted bool) anchor {
	a := anchor{key: string(kv.Key), rev: kv.ModRevision, deleted: deleted}
	if !deleted {
		a.create, a.version, a.value = kv.CreateRevision, kv.Version, string(kv.Value)
	}
	return a
}

// is reports whether ev is the change a records.
func (a anchor) is(ev *clientv3.Event) bool {
	kv := ev.Kv
	if string(kv.Key) != a.key || kv.ModRevision != a.rev || (ev.Type == mvccpb.DELETE) != a.deleted {
		return false
	}
	return a.deleted || (kv.CreateRevision == a.create && kv.Version == a.version && string(kv.Value) == a.value)
}

// listFrom reads the service's instances together with the history key, in
// one read-only transaction, and creates the history key if etcd has none
// (once per history; see history.go).
func (b *Backend) listFrom(ctx context.Context, service string) (listing, error) {
	mark := b.restorer.guard.mark()
	resp, err := b.cli.Txn(ctx).Then(
		clientv3.OpGet(b.historyPath(), b.readOpts()...),
		clientv3.OpGet(b.servicePrefix(service), b.readOpts(clientv3.WithPrefix())...),
	).Commit()
	if err != nil {
		return listing{}, err
	}
	b.checkRead(mark, resp.Header)
	kvs := resp.Responses[1].GetResponseRange().Kvs
	l := listing{
		set:     b.decodeAll(service, kvs),
		rev:     resp.Header.Revision,
		cluster: resp.Header.ClusterId,
	}
	for _, kv := range kvs {
		if kv.ModRevision > l.last.rev {
			l.last = anchorOf(kv, false)
		}
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		l.history = string(kvs[0].Value)
	} else if l.history, err = b.markHistory(ctx); err != nil {
		return listing{}, err
	}
	return l, nil
}

// decode turns a key-value under the service's prefix into an instance,
// skipping (with a warning) a value that is not a valid instance of that
// service stored under its own ID: someone else wrote it. The key must be
// exactly <Prefix>/<service>/<id> with the value's ID, which must not be
// empty: Instance.Validate accepts an empty ID, which Register derives from
// the address, but a stored instance always has its ID, and an empty one
// would match the key <Prefix>/<service>/ itself.
func (b *Backend) decode(service string, kv *mvccpb.KeyValue) (discovery.Instance, bool) {
	if in, ok, reserved := b.decodeReserved(service, kv); reserved { // maint.go
		return in, ok
	}
	id := strings.TrimPrefix(string(kv.Key), b.servicePrefix(service))
	in, err := decodeInstance(service, id, kv.Value)
	if err != nil {
		if b.skipped.First(string(kv.Key), kv.ModRevision) { // once per revision, not per read
			b.log.Warn("skipping a value that is not a valid instance", "key", string(kv.Key),
				"revision", kv.ModRevision, "error", err)
		}
		return discovery.Instance{}, false
	}
	return in, true
}

// Watch implements discovery.Resolver. Watchers of one service share one
// etcd watch, which lists the service at a revision R, then watches from
// R+1, resumes from the last revision it saw after any fault, and lists
// again only if that revision was compacted or etcd's history no longer
// holds it. The shared watch lives until its last Watcher stops or the
// Backend closes; the Watcher returned lives until Stop or until ctx
// ends, whichever comes first.
func (b *Backend) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	if err := discovery.ValidateName("Service", service); err != nil {
		return nil, fmt.Errorf("etcd: watch: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The group holds one feed per service; a service's first Watcher
	// starts its etcd watch (startFollow), with the table locked and open.
	var wt discovery.Watcher
	if !b.regs.startIfOpen(func() { wt = b.watches.Watch(ctx, service, nil) }) {
		return nil, fmt.Errorf("etcd: watch %s: %w", service, discovery.ErrClosed)
	}
	return wt, nil
}

// follow keeps feed up to date with the service's instances until ctx
// ends. It never gives up on a transient fault. It lists the service once,
// then watches from the revision after the list and, after a fault,
// resumes from the revision it reached: it lists again only when that
// revision is gone, compacted or absent from etcd's history (a restored
// or wiped cluster: another cluster ID, a current revision below the one
// reached, another history key, a newest change that the resumed watch
// does not see again, or a rollback the process saw in any answer). A
// failed list fails the feed with discovery.ErrUnavailable.
// After a reconnection it re-establishes its watch and, once the watch has
// caught up with etcd (see watchFrom), publishes the current set again,
// which tells the watchers the set is fresh without a range read. A watch
// that fails (etcd lost its leader, ended or refused the watch) fails the
// feed until the watch that replaces it has caught up.
func (b *Backend) follow(ctx context.Context, service string, feed *backendkit.Feed) {
	defer b.wg.Done()
	prefix := b.servicePrefix(service)
	var (
		current map[string]discovery.Instance // by etcd key
		rev     int64                         // next revision to watch from; 0: list first
		cluster uint64                        // ID of the cluster the list came from
		back    = b.conn.reconnections()      // closed once the connection is back after a failure
		rolled  <-chan struct{}               // closed when the process sees etcd's history go back
		epoch   <-chan struct{}               // the closed back, until the history is checked
		history string                        // value of the history key at the list
		last    anchor                        // the newest change applied
		verify  anchor                        // to see first when resuming; rev 0: none
	)
	var at int64 // the revision up to which current is known to be etcd's
	publish := func() {
		set := make([]discovery.Instance, 0, len(current))
		for _, in := range current {
			set = append(set, in)
		}
		feed.PublishAt(maintkit.Merge(set), uint64(at))
	}
	// A session runs until a failure, after which it waits the policy's
	// next delay; the delays start afresh once etcd has answered the
	// watch (progressed).
	session := func(ctx context.Context) (progressed bool, err error) {
		for ctx.Err() == nil {
			if rev == 0 {
				lctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
				l, err := b.listFrom(lctx, service)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return progressed, err
					}
					feed.Fail(fmt.Errorf("list %s: %w", service, err))
					return progressed, err
				}
				current = make(map[string]discovery.Instance, len(l.set))
				for _, in := range l.set {
					current[prefix+in.ID] = in
				}
				if l.rev < at {
					// A new history (wiped, restored from a backup): its
					// revisions compare with none the watchers were given,
					// so they are told of it before its first set.
					feed.Reset(errHistoryRewound)
				}
				at = l.rev
				feed.PublishAt(maintkit.Merge(l.set), uint64(at))
				rev, cluster, history, last = l.rev+1, l.cluster, l.history, l.last
				epoch, verify = nil, anchor{} // the list is of the present history
				rolled = b.restorer.guard.rolledBack()
			}
			if epoch != nil {
				// Back from an outage: is this still the history the watch
				// followed? (See history.go.)
				h, err := b.history(ctx, epoch)
				if err != nil {
					if ctx.Err() != nil {
						return progressed, err
					}
					feed.Fail(fmt.Errorf("watch %s: %w", service, err))
					return progressed, err
				}
				epoch = nil
				if h != history {
					b.log.Info("etcd's history changed (wiped or replaced), listing again",
						"service", service, "revision", rev-1)
					rev = 0
					continue
				}
				// The history key survives a restore from a backup: the
				// resumed watch checks that it sees the newest change it
				// knew of again (see watchFrom).
				verify = last
			}
			err := b.watchFrom(ctx, service, &watchState{
				current: current, rev: &rev, cluster: cluster,
				last: &last, verify: &verify, rolled: rolled,
				back: &back, epoch: &epoch, at: &at, publish: publish,
				healthy: func() { progressed = true },
			})
			if err != nil && ctx.Err() == nil {
				// The watch is down until it is set up again: the watchers'
				// set is no longer kept fresh (etcd lost its leader, refused
				// or ended the watch). The watch that replaces it publishes
				// once it has caught up, which ends the outage.
				feed.Fail(fmt.Errorf("watch %s: %w", service, err))
				return progressed, err
			}
		}
		return progressed, ctx.Err()
	}
	b.cfg.Retry.Forever(ctx, session, func(f retry.Failure) {
		b.log.Debug("service watch interrupted, resuming", "service", service, "retry_in", f.Delay, "error", f.Err)
	})
}

// A watch that has not caught up yet asks etcd for a progress
// notification, which etcd answers only once every watcher of the stream
// is synced and drops otherwise (it syncs lagging watchers every 100 ms).
// So it asks again, first after progressInterval and then at doubling
// intervals up to maxProgressInterval: on a loaded cluster, where catching
// up takes seconds, a fixed 50 ms pace cost dozens of requests per watch
// and per reconnection (4.9 progress requests per process in a recovery
// of 200 processes), for an answer that comes no sooner.
const (
	progressInterval    = 100 * time.Millisecond
	maxProgressInterval = time.Second
	// ownKeyProgressDelay is when the own-key watch first asks, while it
	// checks that a resumed key's newest change comes again (keywatch.go).
	ownKeyProgressDelay = time.Second
)

// progressPacer times the progress requests of one watch that waits to
// catch up (see progressInterval).
type progressPacer struct {
	timer *time.Timer
	next  time.Duration
}

// newProgressPacer starts the timer of the first request, due after
// first.
func newProgressPacer(first time.Duration) *progressPacer {
	return &progressPacer{timer: time.NewTimer(first), next: first}
}

// C fires when the next request is due.
func (p *progressPacer) C() <-chan time.Time { return p.timer.C }

// again sets the timer of the request after the one just sent.
func (p *progressPacer) again() {
	p.next = max(p.next, min(2*p.next, maxProgressInterval))
	p.timer.Reset(p.next)
}

// stop stops the timer.
func (p *progressPacer) stop() { p.timer.Stop() }

// watchGenerationKey is the gRPC metadata key that gives the watches of
// each connection generation a stream of their own (see watchFrom).
const watchGenerationKey = "roster-watch-generation"

// watchState is what one watch of follow reads and updates.
type watchState struct {
	current map[string]discovery.Instance // by etcd key; updated in place
	rev     *int64                        // next revision to watch from; set to 0 to list again
	cluster uint64                        // ID of the cluster the list came from
	last    *anchor                       // the newest change applied; updated
	verify  *anchor                       // to see first, if its rev is not 0; cleared once seen
	rolled  <-chan struct{}               // closed when the process sees etcd's history go back
	back    *<-chan struct{}              // closed once the connection is back after a failure
	epoch   *<-chan struct{}              // set to the closed back
	at      *int64                        // revision up to which current is etcd's
	publish func()                        // publishes current
	healthy func()                        // called for each response that is not an error
}

// watchFrom watches the service from *st.rev until the watch fails (its
// error), the connection comes back after a failure, the revision reached
// is gone (*st.rev set to 0: list again) or ctx ends (nil).
//
// A watch publishes the set only once it has caught up with etcd: etcd
// confirms a watch (Created) at once, with the revision it has reached,
// but sends the events a lagging watch missed up to about 100 ms later, so
// after a fault the set held at Created is the one from before the fault. The watch has caught up once it has seen every event up to
// that revision: a progress notification at or after it says so (etcd
// sends one, when asked, only once the watch is synced), as does an event
// at or after it. A watch that does not catch up within RequestTimeout
// lists the service instead.
//
// A watch resumed after a reconnection starts at the revision of the
// newest change of the service's keys it applied (st.verify), not after
// the revision it reached, and must get that change first, identical: a
// restore from a backup keeps the history key, and once the restored
// history passes the revision reached, nothing else tells it from the
// history the watch followed. Any other first change, or none by the time
// the watch has caught up, means another history: the service is listed
// again. The cost is no request: etcd sends the changes of that one
// revision again (one event, or a transaction's), and, if they were
// compacted, the watch resumes unchecked from the revision reached, as
// before. A service empty since its list has no such change to check.
func (b *Backend) watchFrom(ctx context.Context, service string, st *watchState) error {
	prefix := b.servicePrefix(service)
	// The watches of one connection generation share a gRPC stream of
	// their own (etcd's client keys streams by metadata). etcd answers a
	// progress request only once every watch of the stream is synced;
	// the watches cancelled at a reconnection, which the client may have
	// resumed on their old stream meanwhile, must not hold it up.
	wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx),
		watchGenerationKey, strconv.FormatUint(b.conn.generation(), 10)))
	defer cancel()
	// created: etcd confirmed this watch, so its header tells whether
	// rev is still in etcd's history.
	created := false
	// pending: changes applied to current but not yet published. They
	// are published once no further response is ready, so that a burst
	// (a whole fleet coming back) costs the watchers one set per
	// burst, not one per response.
	pending := false
	// catchUp: the revision etcd had reached when it confirmed the
	// watch; 0 once the watch has caught up with it. Nothing is
	// published before.
	var (
		catchUp    int64
		catchSince time.Time
		tick       <-chan time.Time
		pacer      *progressPacer
	)
	defer func() {
		if pending {
			st.publish() // what was applied before the watch ended
		}
	}()
	from := *st.rev
	if st.verify.rev != 0 {
		from = st.verify.rev
	}
	events := b.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithCreatedNotify())
	for {
		var resp clientv3.WatchResponse
		var ok bool
		if pending {
			select {
			case resp, ok = <-events:
			default:
				st.publish()
				pending = false
				continue
			}
		} else {
			select {
			case resp, ok = <-events:
			case <-st.rolled:
				b.log.Info("etcd's history went back (wiped, or restored from a backup), listing again",
					"service", service, "revision", *st.rev-1)
				*st.rev = 0
				return nil
			case <-*st.back:
				// Back from an outage: watch again from the revision
				// reached, and publish the set once it has caught up.
				*st.epoch = *st.back
				*st.back = b.conn.reconnections()
				return nil
			case <-tick:
				if time.Since(catchSince) > b.cfg.RequestTimeout {
					b.log.Info("service watch did not catch up with etcd, listing again",
						"service", service, "revision", *st.rev-1, "etcd_revision", catchUp)
					*st.rev = 0
					return nil
				}
				b.requestProgress(wctx, service)
				pacer.again()
				continue
			}
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return errWatchEnded
		}
		if resp.CompactRevision != 0 && st.verify.rev != 0 && *st.rev >= resp.CompactRevision {
			// The change to see again was compacted away, not the
			// revision reached: resume from there, unchecked.
			b.log.Debug("the service's newest change was compacted, resuming unchecked",
				"service", service, "revision", *st.rev-1, "compact_revision", resp.CompactRevision)
			*st.verify = anchor{}
			return nil
		}
		if resp.CompactRevision != 0 {
			b.log.Info("service watch fell behind compaction, listing again",
				"service", service, "compact_revision", resp.CompactRevision)
			*st.rev = 0
			return nil
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if h := resp.Header; h.ClusterId != st.cluster || h.Revision < *st.rev-1 {
			b.log.Info("etcd no longer holds the revision the service watch reached, listing again",
				"service", service, "revision", *st.rev-1, "etcd_revision", h.Revision,
				"cluster", st.cluster, "etcd_cluster", h.ClusterId)
			*st.rev = 0
			return nil
		}
		b.restorer.guard.raise(resp.Header)
		if st.verify.rev != 0 && (len(resp.Events) > 0 || (resp.IsProgressNotify() && catchUp != 0 && resp.Header.Revision >= catchUp)) {
			// The first change the resumed watch gets must be the newest
			// it knew of: otherwise etcd's history is another one (a
			// restored backup, written past the revision reached), and
			// the events after it tell nothing of what changed.
			if !slices.ContainsFunc(resp.Events, st.verify.is) {
				b.log.Info("etcd's history is not the one the service watch followed (restored from a backup?), listing again",
					"service", service, "revision", *st.rev-1, "change_revision", st.verify.rev)
				*st.rev = 0
				return nil
			}
			*st.verify = anchor{}
		}
		st.healthy()
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			if ev.Type == mvccpb.DELETE {
				delete(st.current, key)
			} else if in, ok := b.decode(service, ev.Kv); ok {
				st.current[key] = in
			} else {
				delete(st.current, key)
			}
			// A resumed watch sees again the changes of the revision it
			// checks (see verify), which it had applied.
			*st.rev = max(*st.rev, ev.Kv.ModRevision+1)
			*st.at = max(*st.at, ev.Kv.ModRevision)
		}
		if n := len(resp.Events); n > 0 {
			ev := resp.Events[n-1]
			*st.last = anchorOf(ev.Kv, ev.Type == mvccpb.DELETE)
		}
		if resp.Created && !created {
			created = true
			if resp.Header.Revision >= *st.rev || st.verify.rev != 0 {
				// etcd is ahead of the revision reached: the events
				// in between may still be on their way, whether the
				// watch resumes after a fault or was confirmed late.
				catchUp, catchSince = resp.Header.Revision, time.Now()
				pacer = newProgressPacer(progressInterval)
				defer pacer.stop()
				tick = pacer.C()
				b.requestProgress(wctx, service)
			} else {
				// Publishing after a fault tells the watchers their
				// set is fresh, even when it did not change.
				*st.at = max(*st.at, resp.Header.Revision)
				pending = true
			}
		}
		if catchUp != 0 && st.verify.rev == 0 && (*st.rev-1 >= catchUp || (resp.IsProgressNotify() && resp.Header.Revision >= catchUp)) {
			catchUp, tick = 0, nil
			if resp.IsProgressNotify() {
				*st.at = max(*st.at, resp.Header.Revision)
			}
			pending = true
		}
		if len(resp.Events) > 0 && catchUp == 0 {
			pending = true
		}
	}
}

// requestProgress asks etcd for a progress notification on the watch
// stream of ctx.
func (b *Backend) requestProgress(ctx context.Context, service string) {
	if err := b.cli.RequestProgress(ctx); err != nil && ctx.Err() == nil {
		b.log.Debug("cannot ask etcd for the service watch's progress", "service", service, "error", err)
	}
}
