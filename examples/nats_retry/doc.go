// Command nats_retry shows how roster keeps a node registered on NATS
// JetStream key-value through a network cut longer than the node's TTL:
// the same story as examples/etcd_retry, on the other backend, with the
// same roster code (only the Backend's constructor differs).
//
// With no flags it starts a nats-server with JetStream inside the process
// (nothing to install), registers the node localhost:50000 as service
// "demo", tracks the service's nodes with a watch, then cuts the network
// between the backend and NATS for longer than the TTL (NATS keeps running
// and expires the node's key; watchers see it leave), restores it, and
// shows the node put back. Ctrl+C removes the node at once and exits.
// With -scenario restart it stops and restarts NATS instead: nats-server
// expires nothing while it is down, so the key outlives the outage.
//
//	go run ./examples/nats_retry
//	go run ./examples/nats_retry -endpoints nats://127.0.0.1:4222   # your own NATS: cut or stop it by hand
//
// See README.md beside this file for what to watch for.
package main
