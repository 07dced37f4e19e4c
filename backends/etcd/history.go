package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// historyKey is the name, under the Backend's prefix, of the key that
// identifies etcd's history: <Prefix>/~history. '~' is not allowed in a
// service name, so the key is never taken for an instance or a service.
const historyKey = "~history"

// Why a key of our own tells a new history apart: a member rebuilt from an
// empty data directory keeps its member and cluster IDs (etcd derives them
// from the name, peer URLs and cluster token), and its revision, which
// starts again at 1, passes the one a watch had reached after enough
// writes; the raft term and index start again too and may meet the old
// ones. Nothing etcd reports in a header or a status changes for sure. A
// key holding a random value does: the first reader of a history that
// lacks it creates it (one conditional put per history, not per reader),
// and it is gone, or holds another value, whenever the data the watches
// followed is gone. Reading it is a single small range read per process
// per reconnection, shared by every watch of the Backend. A client that
// may not write under the prefix reads an empty value, and then only the
// cluster ID and revision checks remain. A restore from a backup taken
// after the key was written keeps the key: the revision check catches it
// while the restored revision is below the one reached, the process's
// revision guard (rollback.go) when any answer shows it, and past that
// each resumed watch's check of the newest change it applied (see
// watchFrom in resolver.go).

// historyMark returns a new random value for the history key.
func historyMark() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("history mark: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// historyPath returns the etcd key of the history key.
func (b *Backend) historyPath() string { return b.cfg.Prefix + "/" + historyKey }

// readOpts are the options of the Backend's reads.
func (b *Backend) readOpts(opts ...clientv3.OpOption) []clientv3.OpOption {
	if b.cfg.SerializableReads {
		opts = append(opts, clientv3.WithSerializable())
	}
	return opts
}

// checkRead hands the header of a read's answer to the guard: a
// linearizable read is checked for a rollback; a serializable one, which
// a lagging member may answer, only raises the revision seen.
func (b *Backend) checkRead(mark revMark, h *etcdserverpb.ResponseHeader) {
	if b.cfg.SerializableReads {
		b.restorer.guard.raise(h)
		return
	}
	b.restorer.guard.check(mark, h)
}

// markHistory returns the value of the history key, creating it if etcd
// has none. A client that may not create it gets "" and no error: the
// watches then rely on the cluster ID and revision checks alone.
func (b *Backend) markHistory(ctx context.Context) (string, error) {
	mark, err := historyMark()
	if err != nil {
		return "", err
	}
	key := b.historyPath()
	seen := b.restorer.guard.mark()
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, mark)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		if ctx.Err() == nil && isPermissionDenied(err) {
			b.log.Debug("cannot write the history key; a wiped etcd is noticed by its revision only",
				"key", key, "error", err)
			return "", nil
		}
		return "", fmt.Errorf("mark etcd's history: %w", err)
	}
	b.restorer.guard.check(seen, resp.Header)
	if resp.Succeeded {
		return mark, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		return string(kvs[0].Value), nil
	}
	return "", nil
}

// historyCheck reads the history key once per reconnection for all the
// Backend's watches: epoch is the channel that connMonitor closed when the
// connection came back.
type historyCheck struct {
	mu    sync.Mutex
	epoch <-chan struct{}
	value string
}

// history returns the value of the history key as etcd holds it after the
// reconnection epoch, "" if etcd has none, reading it at most once per
// epoch.
func (b *Backend) history(ctx context.Context, epoch <-chan struct{}) (string, error) {
	h := &b.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.epoch == epoch && epoch != nil {
		return h.value, nil
	}
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	mark := b.restorer.guard.mark()
	resp, err := b.cli.Get(rctx, b.historyPath(), b.readOpts()...)
	if err != nil {
		return "", fmt.Errorf("read etcd's history key: %w", err)
	}
	b.checkRead(mark, resp.Header)
	value := ""
	if len(resp.Kvs) > 0 {
		value = string(resp.Kvs[0].Value)
	}
	h.epoch, h.value = epoch, value
	return value, nil
}

// isPermissionDenied reports whether etcd refused err's request for lack
// of permission.
func isPermissionDenied(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.PermissionDenied
	}
	return status.Code(err) == codes.PermissionDenied
}
