// Command etcd_retry shows how roster keeps a node registered in etcd
// through an etcd outage longer than the node's lease.
//
// With no flags it starts an etcd inside the process (nothing to install),
// registers the node localhost:50000 as service "demo", tracks the
// service's nodes with a watch, then stops etcd for longer than the lease
// TTL, starts it again, and shows the node registered again. Ctrl+C
// revokes the lease and exits. With -scenario cut it cuts the network to
// a running etcd instead, which expires the lease, and shows the lease
// granted again under its ID and the node put back.
//
//	go run ./examples/etcd_retry
//	go run ./examples/etcd_retry -endpoints 127.0.0.1:2379   # your own etcd: stop and start it by hand
//
// See README.md beside this file for what to watch for.
package main
