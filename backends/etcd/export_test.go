package etcd

import clientv3 "go.etcd.io/etcd/client/v3"

// Client returns the etcd client the Backend uses, for tests that read or
// write etcd directly.
func (b *Backend) Client() *clientv3.Client { return b.cli }

// Key returns the etcd key of an instance: <Prefix>/<service>/<id>.
func (b *Backend) Key(service, id string) string { return b.key(service, id) }

// PasswordInClearMessage is the warning New logs for a password sent
// without TLS.
const PasswordInClearMessage = passwordInClearMessage
