package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
)

// lastMsg is what the bucket holds for one key.
type lastMsg struct {
	seq   uint64 // sequence of the last message on the key's subject; 0 if none
	live  bool   // it is a value, not a removal or expiry marker
	owner string // ownerHeader of the message
	value []byte
}

// last reads the last message on subject.
func (b *Backend) last(ctx context.Context, subject string) (lastMsg, error) {
	_, stream, err := b.bucket(ctx)
	if err != nil {
		return lastMsg{}, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lastMsg{}, nil
	}
	if err != nil {
		return lastMsg{}, err
	}
	return lastMsg{
		seq:   m.Sequence,
		live:  m.Header.Get(kvOpHeader) == "" && m.Header.Get(markerHdr) == "",
		owner: m.Header.Get(ownerHeader),
		value: m.Data,
	}, nil
}

// sameValue reports whether l holds value.
func (l lastMsg) sameValue(value []byte) bool { return bytes.Equal(l.value, value) }

// publish writes r's value with the TTL if the last sequence of its
// subject is expect (0: no message), and returns the new sequence.
func (b *Backend) publish(ctx context.Context, r *registration, expect uint64) (uint64, error) {
	return b.write(ctx, r, jetstream.WithExpectLastSequencePerSubject(expect))
}

// write writes r's value with the TTL, under the conditions of opts, and
// returns the new sequence.
func (b *Backend) write(ctx context.Context, r *registration, opts ...jetstream.PublishOpt) (uint64, error) {
	sent := time.Now()
	ack, err := b.js.PublishMsg(ctx, b.valueMsg(r), append(opts, jetstream.WithMsgTTL(b.cfg.TTL))...)
	if err != nil {
		return 0, err
	}
	b.stored(r, sent)
	return ack.Sequence, nil
}

// valueMsg is the message that writes r's value as this Backend's.
func (b *Backend) valueMsg(r *registration) *natsgo.Msg {
	m := &natsgo.Msg{Subject: r.subject, Data: r.value, Header: natsgo.Header{}}
	m.Header.Set(ownerHeader, b.owner)
	return m
}

// stored records, for BackendFacts, that NATS stored a write of r's key
// sent at sent: when the key expires without another, and the round trip.
func (b *Backend) stored(r *registration, sent time.Time) {
	r.expires.Store(sent.Add(b.cfg.TTL).UnixNano())
	b.rtt.Store(int64(time.Since(sent)))
}

func (b *Backend) purgeMsg(subject string) *natsgo.Msg {
	m := natsgo.NewMsg(subject)
	m.Header.Set(kvOpHeader, "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Header.Set(ownerHeader, b.owner)
	return m
}

// purgeOwn removes the key of subject if this Backend wrote its last
// value: at sequence rev, the last write it knows of, or at a later one
// that is its own too (a write whose reply it never got, such as a renewal
// cut short by Close or by RequestTimeout). A value another process wrote
// is left to it: removed is false and err nil.
func (b *Backend) purgeOwn(ctx context.Context, subject string, rev uint64) (removed bool, err error) {
	err = b.purge(ctx, subject, rev)
	for attempt := 0; wrongSequence(err) && attempt < 3; attempt++ {
		l, lerr := b.last(ctx, subject)
		if lerr != nil {
			return false, lerr
		}
		if !l.live || l.owner != b.owner {
			return false, nil
		}
		err = b.purge(ctx, subject, l.seq)
	}
	if wrongSequence(err) {
		return false, nil
	}
	return err == nil, err
}

// purge removes the key of subject if its last sequence is expect. The
// purge marker itself expires after DefaultMarkerTTL.
func (b *Backend) purge(ctx context.Context, subject string, expect uint64) error {
	_, err := b.js.PublishMsg(ctx, b.purgeMsg(subject), jetstream.WithExpectLastSequencePerSubject(expect),
		jetstream.WithMsgTTL(DefaultMarkerTTL))
	return err
}

// wrongSequence reports a compare-and-set failure: the key's last
// sequence was not the one expected.
func wrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// unavailable wraps err, from a call bounded by ctx,
// with discovery.ErrUnavailable unless ctx has ended (the caller gave up),
// err is a compare-and-set failure, says the Backend or the registration
// was closed, or already says so. A timeout of the
// client's own, with ctx still live, is the registry's fault.
func unavailable(ctx context.Context, err error) error {
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, discovery.ErrUnavailable),
		errors.Is(err, discovery.ErrInvalidInstance), errors.Is(err, discovery.ErrClosed), wrongSequence(err):
		return err
	}
	return fmt.Errorf("%w: %w", discovery.ErrUnavailable, err)
}
