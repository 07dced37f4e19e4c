package main

import (
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/maintkit"
	"github.com/roster-sd/roster/internal/webui"
)

// uiMaint merges operators' maintenance overrides into the updates of the
// web view's one watch over the etcd prefix (etcdView.FollowRegistry),
// which decodes instances itself rather than through the backend's
// Watch: it keeps the instances as their processes wrote them and the
// overrides (<prefix><service>/~maint[/<id>]), and puts an instance again,
// merged, when an override of it or of its service comes or goes. It is
// used by one goroutine.
type uiMaint struct {
	prefix    string // "<Prefix>/"
	raw       map[discovery.Key]webui.LeasedInstance
	overrides map[discovery.Key]discovery.Maintenance
	changed   map[discovery.Key]bool // targets whose override came or went since the last merge
}

func newUIMaint(prefix string) *uiMaint {
	return &uiMaint{
		prefix:    prefix,
		raw:       make(map[discovery.Key]webui.LeasedInstance),
		overrides: make(map[discovery.Key]discovery.Maintenance),
		changed:   make(map[discovery.Key]bool),
	}
}

// take records kv if it is a reserved key of a service (the remainder
// after <prefix><service>/ starts with '~') and reports true; deleted says
// the key was deleted. Other keys are the caller's.
func (m *uiMaint) take(kv *mvccpb.KeyValue, deleted bool) bool {
	service, rest, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), m.prefix), "/")
	if !ok || !strings.HasPrefix(rest, "~") {
		return false
	}
	target := discovery.Key{Service: service}
	if rest != "~"+maintkit.Name {
		id, ok := strings.CutPrefix(rest, "~"+maintkit.Name+"/")
		if !ok {
			return true // roster's own, not an override
		}
		target.ID = id
	}
	if discovery.ValidateTarget(target) != nil {
		return true
	}
	o, err := maintkit.Decode(target, kv.Value)
	if _, had := m.overrides[target]; had || (err == nil && !deleted) {
		m.changed[target] = true
	}
	if deleted || err != nil {
		delete(m.overrides, target)
	} else {
		m.overrides[target] = o
	}
	return true
}

// merge records u's instances as written and returns u with every put
// instance merged with its overrides, plus the instances whose override
// came or went since the last merge.
func (m *uiMaint) merge(u webui.RegistryUpdate) webui.RegistryUpdate {
	if u.Reset {
		clear(m.raw)
	}
	for _, k := range u.Deleted {
		delete(m.raw, k)
	}
	put := make(map[discovery.Key]bool, len(u.Put))
	for _, in := range u.Put {
		m.raw[in.Key()] = in
		put[in.Key()] = true
	}
	if len(m.changed) > 0 {
		for k, in := range m.raw {
			if !put[k] && (m.changed[k] || m.changed[discovery.Key{Service: k.Service}]) {
				u.Put = append(u.Put, in)
			}
		}
		clear(m.changed)
	}
	if len(m.overrides) == 0 {
		return u
	}
	list := make([]discovery.Maintenance, 0, len(m.overrides))
	for _, o := range m.overrides {
		list = append(list, o)
	}
	out := u
	out.Put = make([]webui.LeasedInstance, len(u.Put))
	for i, in := range u.Put {
		in.Instance = discovery.ApplyMaintenance([]discovery.Instance{in.Instance}, list)[0]
		out.Put[i] = in
	}
	return out
}
