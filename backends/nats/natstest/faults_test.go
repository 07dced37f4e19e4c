package natstest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/roster-sd/roster/backends/nats/natstest"
	"github.com/roster-sd/roster/internal/testing/testwait"
)

// get returns k's value in kv, or "" and the error. Each try has a second
// of its own, as in getsV.
func get(ctx context.Context, kv jetstream.KeyValue, k string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	e, err := kv.Get(ctx, k)
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// A wiped server comes back on the same URL without its buckets.
func TestWipeLosesEveryBucket(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	url := srv.URL()
	js := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	natstest.Wipe(t, srv)
	if got := srv.URL(); got != url {
		t.Fatalf("URL after Wipe = %s; want %s", got, url)
	}
	var err2 error
	testwait.Until(t, 10*time.Second, "bucket b reported missing after Wipe", func() bool {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err2 = js.KeyValue(c, "b")
		return errors.Is(err2, jetstream.ErrBucketNotFound)
	})
}

// A server restarted from a backup holds what was written before the
// backup and nothing written after it; the backup serves a second restore.
func TestRestoreBackupRollsBack(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	js := connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	backup := natstest.TakeBackup(t, srv)
	if _, err := kv.Put(ctx, "k", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "later", []byte("x")); err != nil {
		t.Fatal(err)
	}

	for round := 1; round <= 2; round++ {
		natstest.RestoreBackup(t, srv, backup)
		testwait.Until(t, 10*time.Second, "k = v1 after RestoreBackup", func() bool {
			v, _ := get(ctx, kv, "k")
			return v == "v1"
		})
		if _, err := get(ctx, kv, "later"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("round %d: Get(later) after RestoreBackup = %v; want ErrKeyNotFound", round, err)
		}
		if _, err := kv.Put(ctx, "k", []byte("v3")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFaultsAfterClose(t *testing.T) {
	t.Parallel()
	srv, err := natstest.New()
	if err != nil {
		t.Fatal(err)
	}
	b, err := srv.Backup()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wipe(); !errors.Is(err, natstest.ErrNotRunning) {
		t.Errorf("Wipe after Close = %v; want ErrNotRunning", err)
	}
	if err := srv.RestoreBackup(b); !errors.Is(err, natstest.ErrNotRunning) {
		t.Errorf("RestoreBackup after Close = %v; want ErrNotRunning", err)
	}
	if _, err := srv.Backup(); !errors.Is(err, natstest.ErrNotRunning) {
		t.Errorf("Backup after Close = %v; want ErrNotRunning", err)
	}
}
