// Package maintkit is what roster's backends share to store operators'
// maintenance overrides (discovery.Maintainer) beside the instances of a
// service and merge them into what Resolve and Watch return: the encoding
// of an override's value, and the entry that carries a decoded override
// through a backend's map of a service's keys until the set is published.
//
// Layout (the reserved non-instance keys of a service):
//
//   - etcd: <Prefix>/<service>/~maint for the whole service and
//     <Prefix>/<service>/~maint/<id> for one instance. An instance ID
//     cannot hold '~', so no instance key is ever taken for an override,
//     and the service's prefix watch sees overrides at no extra cost. Every
//     key under <Prefix>/<service>/ whose remainder starts with '~' is
//     roster's own and not an instance.
//   - NATS: <svc>./maint for the whole service and <svc>./maint/<id> for
//     one instance, with '.' written '=' in each name as for instance keys.
//     The token after the service token holds '/', which no roster name
//     can, so the service's <svc>.* filter sees overrides and no instance
//     key is ever taken. Every key whose second token holds '/' is roster's
//     own and not an instance.
//   - memory: the same API, kept in the Store.
//
// The value is the discovery.Maintenance as JSON. An override that ends by
// itself is ended by the registry (an etcd lease, a NATS per-key TTL).
package maintkit

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/roster-sd/roster/discovery"
)

// Name is the reserved name of overrides: "~maint" under an etcd service
// prefix, "/maint" as a NATS key token.
const Name = "maint"

// Encode returns the value stored for m.
func Encode(m discovery.Maintenance) ([]byte, error) {
	return json.Marshal(m)
}

// Decode decodes the value of the override of target. It fails unless the
// value is a valid override of exactly that target.
func Decode(target discovery.Key, value []byte) (discovery.Maintenance, error) {
	var m discovery.Maintenance
	if err := json.Unmarshal(value, &m); err != nil {
		return discovery.Maintenance{}, err
	}
	if err := m.Validate(); err != nil {
		return discovery.Maintenance{}, err
	}
	if m.Target() != target {
		return discovery.Maintenance{}, fmt.Errorf("it holds the override of %s", m.Target())
	}
	return m, nil
}

// entryPrefix starts the ID of every entry: '~' is in no valid ID.
const entryPrefix = "~" + Name

// Entry returns the entry that carries m in a backend's map of a service's
// instances until Merge folds it in: an Instance of m's service in
// ConditionMaintenance (which no decoded instance can be: Validate refuses
// it from a process) whose ID, "~maint" or "~maint/<id>", is in no valid
// instance. It is never returned to a caller.
func Entry(m discovery.Maintenance) discovery.Instance {
	id := entryPrefix
	if m.ID != "" {
		id += "/" + m.ID
	}
	return discovery.Instance{Service: m.Service, ID: id, Condition: discovery.ConditionMaintenance, Reason: m.Reason}
}

// Merge returns set without its entries (see Entry), with the overrides
// they carry merged into its instances (discovery.ApplyMaintenance), in
// set's order.
func Merge(set []discovery.Instance) []discovery.Instance {
	var overrides []discovery.Maintenance
	instances := set[:0:0]
	for _, in := range set {
		if m, ok := fromEntry(in); ok {
			overrides = append(overrides, m)
			continue
		}
		instances = append(instances, in)
	}
	if overrides == nil {
		return set
	}
	return discovery.ApplyMaintenance(instances, overrides)
}

// fromEntry returns the override an entry carries.
func fromEntry(in discovery.Instance) (discovery.Maintenance, bool) {
	if in.Condition != discovery.ConditionMaintenance || !strings.HasPrefix(in.ID, entryPrefix) {
		return discovery.Maintenance{}, false
	}
	id, _ := strings.CutPrefix(in.ID[len(entryPrefix):], "/")
	return discovery.Maintenance{Service: in.Service, ID: id, Reason: in.Reason}, true
}
