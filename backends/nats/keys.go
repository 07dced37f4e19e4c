package nats

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/roster-sd/roster/discovery"
)

// Key layout: one key per instance, "<service>.<id>", each name one NATS
// subject token in which every '.' of the name is written '='. roster's
// names hold letters, digits, '.', '_' and '-' only (discovery.Instance's
// Validate), and '=' is none of them, so the mapping is reversible; no
// token can hold a wildcard ('*', '>'), a separator or a space. The key's
// subject is "$KV.<bucket>.<service>.<id>".

// token maps a name onto one subject token, or fails with an error
// wrapping discovery.ErrInvalidInstance that names field.
func token(field, name string) (string, error) {
	if name == "" {
		return "", &discovery.FieldError{Field: field, Reason: "must not be empty"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", &discovery.FieldError{Field: field, Reason: fmt.Sprintf("holds %q, which a NATS subject token cannot hold", c)}
		}
	}
	return strings.ReplaceAll(name, ".", "="), nil
}

// untoken reverses token.
func untoken(tok string) string { return strings.ReplaceAll(tok, "=", ".") }

// kvKey returns the bucket key of service/id.
func kvKey(k discovery.Key) (string, error) {
	svc, err := token("Service", k.Service)
	if err != nil {
		return "", err
	}
	id, err := token("ID", k.ID)
	if err != nil {
		return "", err
	}
	return svc + "." + id, nil
}

// serviceFilter returns the key filter of every instance of service.
func serviceFilter(service string) (string, error) {
	svc, err := token("Service", service)
	if err != nil {
		return "", err
	}
	return svc + ".*", nil
}

// decodeEntry turns a key and value of the bucket into an instance,
// checking that the value is a valid instance, with an ID, stored under
// exactly the key roster writes for it (so no empty token).
func decodeEntry(key string, value []byte) (discovery.Instance, error) {
	_, id, ok := strings.Cut(key, ".")
	if !ok || strings.Contains(id, ".") {
		return discovery.Instance{}, fmt.Errorf("key %q is not <service>.<id>", key)
	}
	var in discovery.Instance
	if err := json.Unmarshal(value, &in); err != nil {
		return discovery.Instance{}, err
	}
	if err := in.Validate(); err != nil {
		return discovery.Instance{}, err
	}
	if in.ID == "" {
		// Validate lets an ID be derived from the address; a stored
		// instance names its own (etcd's decoder refuses one without).
		return discovery.Instance{}, fmt.Errorf("key %q holds an instance without an ID", key)
	}
	if own, err := kvKey(in.Key()); err != nil || own != key {
		return discovery.Instance{}, fmt.Errorf("it holds instance %s/%s", in.Service, in.ID)
	}
	return in, nil
}

// Bucket returns the name of the Backend's key-value bucket.
func (b *Backend) Bucket() string { return b.cfg.Bucket }
