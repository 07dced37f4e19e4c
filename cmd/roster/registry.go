package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
)

// registry is what the commands need of a backend, whichever it is: the
// discovery contracts, plus the operator's view that each backend offers
// in its own terms (services with counts, instances with the time they
// have left, removing any process's instance).
type registry interface {
	discovery.Backend
	discovery.StatusReporter

	// services lists every service with its instance count, sorted by
	// name, and the entries that are not roster's.
	services(ctx context.Context) ([]serviceCount, []skippedEntry, error)
	// instances lists the instances of service, sorted by ID, with the
	// time they have left, and the entries that are not roster's.
	instances(ctx context.Context, service string) ([]instanceRow, []skippedEntry, error)
	// remove deletes one instance whoever registered it; an error wraps
	// discovery.ErrNotRegistered when there is none.
	remove(ctx context.Context, service, id string) error
	// where says where the registry keeps its instances, for messages:
	// "under /roster/services", "in bucket roster".
	where() string
	// entry names the entry of one instance, for messages: its etcd key
	// or its bucket key.
	entry(service, id string) string
	// holder describes what keeps the registrations alive right now, for
	// register's lines ("lease 694d9b4c3e6e2a0f"), or "".
	holder() string
	// findServices reports the services as they appear (see
	// etcd.Backend.FindServices), for the web view.
	findServices(ctx context.Context, found func(services []string)) error
}

// skippedEntry is an entry that ls passed over: it is not roster's.
type skippedEntry struct {
	key string
	err error
}

// etcdRegistry is the etcd backend as a registry.
type etcdRegistry struct{ *etcd.Backend }

func (r etcdRegistry) services(ctx context.Context) ([]serviceCount, []skippedEntry, error) {
	list, skipped, err := r.Services(ctx)
	out := make([]serviceCount, 0, len(list))
	for _, s := range list {
		out = append(out, serviceCount{Service: s.Service, Instances: s.Instances})
	}
	return out, etcdSkipped(skipped), err
}

func (r etcdRegistry) instances(ctx context.Context, service string) ([]instanceRow, []skippedEntry, error) {
	list, skipped, err := r.Instances(ctx, service)
	rows := make([]instanceRow, 0, len(list))
	for _, in := range list {
		row := rowOf(in.Instance)
		if in.Lease != 0 {
			row.Lease = strconv.FormatInt(int64(in.Lease), 16)
			ttl := int64(in.TTL / time.Second) // negative once the lease has expired
			row.TTLSeconds = &ttl
		}
		rows = append(rows, row)
	}
	return rows, etcdSkipped(skipped), err
}

func etcdSkipped(skipped []etcd.SkippedKey) []skippedEntry {
	out := make([]skippedEntry, 0, len(skipped))
	for _, s := range skipped {
		out = append(out, skippedEntry{key: s.Key, err: s.Err})
	}
	return out
}

func (r etcdRegistry) findServices(ctx context.Context, found func([]string)) error {
	return r.FindServices(ctx, found)
}

func (r etcdRegistry) remove(ctx context.Context, service, id string) error {
	return r.Delete(ctx, service, id)
}

func (r etcdRegistry) where() string { return "under " + r.Prefix() }

func (r etcdRegistry) entry(service, id string) string {
	return "key " + r.Prefix() + "/" + service + "/" + id
}

func (r etcdRegistry) holder() string {
	if lease := r.Lease(); lease != 0 {
		return fmt.Sprintf("lease %x", int64(lease))
	}
	return ""
}

// natsRegistry is the NATS backend as a registry.
type natsRegistry struct{ *nats.Backend }

func (r natsRegistry) services(ctx context.Context) ([]serviceCount, []skippedEntry, error) {
	list, skipped, err := r.Services(ctx)
	out := make([]serviceCount, 0, len(list))
	for _, s := range list {
		out = append(out, serviceCount{Service: s.Service, Instances: s.Instances})
	}
	return out, natsSkipped(skipped), err
}

func (r natsRegistry) instances(ctx context.Context, service string) ([]instanceRow, []skippedEntry, error) {
	list, skipped, err := r.Instances(ctx, service)
	rows := make([]instanceRow, 0, len(list))
	for _, in := range list {
		row := rowOf(in.Instance)
		if !in.Expires.IsZero() { // a key without a TTL stays until deleted
			ttl := int64(in.TTL / time.Second) // negative once the key is past its TTL
			row.TTLSeconds = &ttl
		}
		rows = append(rows, row)
	}
	return rows, natsSkipped(skipped), err
}

func natsSkipped(skipped []nats.SkippedKey) []skippedEntry {
	out := make([]skippedEntry, 0, len(skipped))
	for _, s := range skipped {
		out = append(out, skippedEntry{key: s.Key, err: s.Err})
	}
	return out
}

func (r natsRegistry) findServices(ctx context.Context, found func([]string)) error {
	return r.FindServices(ctx, found)
}

func (r natsRegistry) remove(ctx context.Context, service, id string) error {
	return r.Delete(ctx, service, id)
}

func (r natsRegistry) where() string { return "in bucket " + r.Bucket() }

func (r natsRegistry) entry(service, id string) string {
	key, err := nats.KeyOf(discovery.Key{Service: service, ID: id})
	if err != nil { // the commands check names first
		key = service + "." + id
	}
	return "key " + key + " in bucket " + r.Bucket()
}

func (natsRegistry) holder() string { return "" }
