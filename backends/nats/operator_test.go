package nats_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/discoverytest"
)

// TestOperatorView runs discoverytest's operator-view subtests, each on a
// bucket of its own (the conformance harness).
func TestOperatorView(t *testing.T) {
	discoverytest.RunOperatorView(t, harnesses(t, "operator"))
}

// followed collects FollowRegistry's updates on a channel.
func followed(t *testing.T, b *nats.Backend) (<-chan discovery.RegistryUpdate, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan discovery.RegistryUpdate, 256)
	done := make(chan error, 1)
	go func() {
		done <- b.FollowRegistry(ctx, func(u discovery.RegistryUpdate) {
			c := discovery.RegistryUpdate{Reset: u.Reset, Unreachable: u.Unreachable}
			for _, s := range u.Services {
				c.Services = append(c.Services, discovery.ServiceSet{Service: s.Service, Instances: slices.Clone(s.Instances)})
			}
			select {
			case updates <- c:
			default:
				t.Error("FollowRegistry's updates are not read: more than 256")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return updates, done
}

// nextUpdate returns the next update, failing t if none comes in time.
func nextUpdate(t *testing.T, updates <-chan discovery.RegistryUpdate, what string) discovery.RegistryUpdate {
	t.Helper()
	select {
	case u := <-updates:
		return u
	case <-time.After(followWait):
		t.Fatalf("no update within %v: want %s", followWait, what)
		return discovery.RegistryUpdate{}
	}
}

// TestFollowRegistry: FollowRegistry reports each instance named by its
// key, passes over reserved keys (a '/' after the service token), does not
// report renewals that change nothing, reports NATS unreachable while it
// is down, and every instance again (a Reset) once it is back.
func TestFollowRegistry(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	b := newBackend(t, testConfig(t, srv.URL(), "roster"))
	p1 := inst("payments", "p-1")
	register(t, b, p1)
	putKeys(t, rawKV(t, srv.URL(), "roster"), map[string]string{"payments./maint/p-1": `{"reason":"reserved: not an instance"}`})
	view := newBackend(t, testConfig(t, srv.URL(), "roster"))
	updates, _ := followed(t, view)

	u := nextUpdate(t, updates, "the first Reset")
	if !u.Reset || u.Unreachable != nil || len(u.Services) != 1 || u.Services[0].Service != "payments" ||
		len(u.Services[0].Instances) != 1 || !u.Services[0].Instances[0].Equal(p1) || u.Services[0].Instances[0].Lease != "payments.p-1" {
		t.Fatalf("first update %+v; want a Reset with payments/p-1 alone, its lease its key", u)
	}
	// Two TTLs of renewals (three per TTL) change nothing: no update.
	select {
	case u := <-updates:
		t.Fatalf("an update while only renewals were written: %+v", u)
	case <-time.After(2 * testTTL):
	}

	srv.Stop()
	if u := nextUpdate(t, updates, "NATS unreachable"); !errors.Is(u.Unreachable, discovery.ErrUnavailable) || len(u.Services) != 0 {
		t.Fatalf("after NATS stopped: %+v; want Unreachable wrapping ErrUnavailable", u)
	}
	natstest.Restart(t, srv)
	for {
		u := nextUpdate(t, updates, "a Reset once NATS is back")
		if u.Unreachable != nil {
			continue
		}
		if !u.Reset || len(u.Services) != 1 || !u.Services[0].Instances[0].Equal(p1) {
			t.Fatalf("once NATS is back: %+v; want a Reset with payments/p-1", u)
		}
		break
	}
}

// followWait bounds each wait for an update: generous on a busy machine.
const followWait = 20 * time.Second
