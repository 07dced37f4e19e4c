// Package grpcresolver lets gRPC clients dial roster services: it is a
// gRPC resolver.Builder for the "roster" scheme over any
// discovery.Resolver.
//
// Pass the [Builder] to the ClientConn; nothing is registered globally:
//
//	b, err := grpcresolver.NewBuilder(backend)
//	if err != nil {
//		return err
//	}
//	conn, err := grpc.NewClient("roster:///payments",
//		grpc.WithResolvers(b),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// For each ClientConn the resolver watches the service and sends gRPC the
// full list of the instances that should get new traffic on every change
// (discovery.RoutePolicy: the serving ones, or the not-ready ones when
// none is serving; never draining ones; see [WithRoutePolicy]), each
// address carrying its discovery.Instance (read it back with
// [InstanceFromAddress] or [InstanceFromEndpoint]) and each endpoint its
// weight and zone ([WeightFromEndpoint], [ZoneFromEndpoint]). Unlike etcd's own naming resolver, it never
// freezes: when the watch cannot be set up or fails, the error goes to gRPC
// through ReportError (which keeps using the last good addresses) and the
// resolver watches again after a backoff, until the ClientConn is closed.
// When the watcher reports the registry unreachable (an error wrapping
// discovery.ErrUnavailable), the resolver keeps the watcher and leaves
// gRPC's addresses alone, so calls go on to the known instances; it only
// logs the outage (or reports it, if gRPC has no address yet) and sends
// the set again once the registry is back. Every set gRPC gets comes from
// the watch while it is healthy; ResolveNow forces a Resolve of the
// upstream only while the watch is failing or being set up. When the
// upstream tells the registry's revision of its sets
// (discovery.RevisionResolver, as the etcd and NATS backends do), the resolver
// never sends gRPC a set older than the one it holds: a resolved set older
// than gRPC's is dropped, and so are the watch's sets older than a
// resolved one, until the watch catches up. Revisions are compared only
// between two outages of the watch, since a registry may start a new
// history during one.
//
// Put a cache.Resolver (package discovery/cache) in front of the backend
// to share one upstream watch among many ClientConns of one service.
package grpcresolver
