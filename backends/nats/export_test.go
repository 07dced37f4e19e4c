package nats

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/discovery"
)

// WriteUnseen writes k's value again, as b's own write, without b learning
// its sequence: a write whose reply b never got (a renewal cut short by
// Close or by RequestTimeout). It goes over b's connection, which does not
// echo it to b's own-key subscription.
func WriteUnseen(ctx context.Context, b *Backend, k discovery.Key) error {
	b.mu.Lock()
	r := b.regs[k]
	b.mu.Unlock()
	_, err := b.js.PublishMsg(ctx, b.valueMsg(r), jetstream.WithMsgTTL(b.cfg.TTL))
	return err
}

// DecodeEntry is decodeEntry, for the fuzz target.
var DecodeEntry = decodeEntry

// KeyOf returns the bucket key of service/id (kvKey).
func KeyOf(k discovery.Key) (string, error) { return kvKey(k) }
