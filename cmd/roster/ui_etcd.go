package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/tlsfiles"
	"github.com/roster-sd/roster/internal/webui"
)

// probeEvery is how often the web view reads one key of etcd, to know
// that etcd still answers (a watch says nothing while etcd is away).
const probeEvery = time.Second

// etcdView is the web view's Registry on etcd: registryView, plus one
// watch over the whole prefix that follows every instance
// (webui.RegistryFollower) and leases read by ID (webui.LeaseReader), so
// that the view costs etcd one watch whatever the number of services, and
// one lease read per process rather than per service.
type etcdView struct {
	registryView
	cli     *clientv3.Client
	prefix  string
	where   string        // for messages: "etcd 127.0.0.1:2379"
	timeout time.Duration // bounds each read, and how long etcd may stay silent
}

var (
	_ webui.RegistryFollower = etcdView{}
	_ webui.LeaseReader      = etcdView{}
)

// newEtcdView returns the view of r on a client of its own, built from
// cfg (which etcd.New has accepted already). The caller closes the
// client.
func newEtcdView(r registry, cfg etcd.Config, where string, timeout time.Duration) (etcdView, error) {
	if cfg.TLS == nil && (cfg.CACertFile != "" || cfg.CertFile != "" || cfg.KeyFile != "") {
		tc, err := tlsfiles.Load(cfg.CACertFile, cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return etcdView{}, err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(etcd.ClientConfig(cfg))
	if err != nil {
		return etcdView{}, fmt.Errorf("connect to %s: %w", where, err)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = etcd.DefaultPrefix
	}
	return etcdView{registryView: registryView{r}, cli: cli, prefix: prefix, where: where, timeout: timeout}, nil
}

// FollowRegistry implements webui.RegistryFollower: one read of the
// prefix, then one watch from the revision after it. While the watch is
// open it reads one key every probeEvery; an etcd that does not answer it
// within the timeout is reported unreachable until it answers again (the
// client resumes the watch where it was once etcd is back).
func (v etcdView) FollowRegistry(ctx context.Context, apply func(webui.RegistryUpdate)) error {
	prefix := v.prefix + "/"
	lctx, cancel := context.WithTimeout(ctx, v.timeout)
	resp, err := v.cli.Get(lctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s did not answer a read of %s within %v: %w: %w", v.where, v.prefix, v.timeout, discovery.ErrUnavailable, err)
	}
	mm := newUIMaint(prefix) // ui_maint.go: operators' overrides
	u := webui.RegistryUpdate{Reset: true}
	for _, kv := range resp.Kvs {
		if mm.take(kv, false) {
			continue
		}
		if in, ok := decodeKV(prefix, kv); ok {
			u.Put = append(u.Put, in)
		}
	}
	apply(mm.merge(u))

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := v.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	// Probes: one read of a single key (the prefix itself) at a time,
	// each bounded by the timeout; the loop below learns each result.
	probed := make(chan error)
	var probes sync.WaitGroup
	defer probes.Wait()
	defer cancel() // first: it ends the probes
	probes.Go(func() {
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(wctx, v.timeout)
			_, err := v.cli.Get(pctx, v.prefix, clientv3.WithKeysOnly())
			pcancel()
			select {
			case probed <- err:
			case <-wctx.Done():
				return
			}
		}
	})
	down := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-probed:
			switch {
			case err != nil && !down && ctx.Err() == nil:
				down = true
				apply(webui.RegistryUpdate{Unreachable: fmt.Errorf("%s did not answer within %v: %w", v.where, v.timeout, discovery.ErrUnavailable)})
			case err == nil && down:
				down = false
				apply(webui.RegistryUpdate{})
			}
			continue
		case wr, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errors.New("the watch over " + v.prefix + " ended")
			}
			if wr.CompactRevision != 0 {
				return fmt.Errorf("the watch over %s fell behind compaction (revision %d)", v.prefix, wr.CompactRevision)
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("the watch over %s: %w", v.prefix, err)
			}
			u := webui.RegistryUpdate{}
			for _, ev := range wr.Events {
				if mm.take(ev.Kv, ev.Type == mvccpb.DELETE) {
					continue
				}
				in, ok := decodeKV(prefix, ev.Kv)
				if ev.Type == mvccpb.PUT && ok {
					u.Put = append(u.Put, in)
				} else if k, ok := keyOf(prefix, ev.Kv.Key); ok {
					u.Deleted = append(u.Deleted, k) // deleted, or now holding what is not an instance
				}
			}
			u = mm.merge(u)
			if len(u.Put) > 0 || len(u.Deleted) > 0 {
				if down {
					u.Unreachable = fmt.Errorf("%s did not answer within %v: %w", v.where, v.timeout, discovery.ErrUnavailable)
				}
				apply(u)
			}
		}
	}
}

// ReadLease implements webui.LeaseReader: one TimeToLive request.
func (v etcdView) ReadLease(ctx context.Context, lease string) (webui.LeaseInfo, error) {
	id, err := strconv.ParseInt(lease, 16, 64)
	if err != nil {
		return webui.LeaseInfo{}, fmt.Errorf("lease %q: %w", lease, err)
	}
	resp, err := v.cli.TimeToLive(ctx, clientv3.LeaseID(id))
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return webui.LeaseInfo{}, nil
	case err != nil:
		return webui.LeaseInfo{}, fmt.Errorf("time to live of lease %s: %w", lease, err)
	case resp.TTL < 0:
		return webui.LeaseInfo{}, nil
	}
	return webui.LeaseInfo{Found: true, Left: time.Duration(resp.TTL) * time.Second, Granted: time.Duration(resp.GrantedTTL) * time.Second}, nil
}

// keyOf returns the instance a key <prefix><service>/<id> names.
func keyOf(prefix string, key []byte) (discovery.Key, bool) {
	service, id, ok := strings.Cut(strings.TrimPrefix(string(key), prefix), "/")
	if !ok || discovery.ValidateName("Service", service) != nil || discovery.ValidateName("ID", id) != nil {
		return discovery.Key{}, false
	}
	return discovery.Key{Service: service, ID: id}, true
}

// decodeKV returns the instance a key holds, if it holds what roster
// writes: the instance as JSON, valid, stored under its own service and
// ID (as ls reads it).
func decodeKV(prefix string, kv *mvccpb.KeyValue) (webui.LeasedInstance, bool) {
	k, ok := keyOf(prefix, kv.Key)
	if !ok {
		return webui.LeasedInstance{}, false
	}
	var in discovery.Instance
	if json.Unmarshal(kv.Value, &in) != nil || in.Validate() != nil || in.Service != k.Service || in.ID != k.ID {
		return webui.LeasedInstance{}, false
	}
	out := webui.LeasedInstance{Instance: in}
	if kv.Lease != 0 {
		out.Lease = strconv.FormatInt(kv.Lease, 16)
	}
	return out, true
}
