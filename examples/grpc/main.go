package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/discovery/grpcresolver"
	"github.com/roster-sd/roster/retry"
)

const service = "greeter"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "grpc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints; empty starts an embedded etcd")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	logger := hclog.New(&hclog.LoggerOptions{Output: stderr, DisableTime: true, Level: hclog.Info})
	say := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }

	cfg := etcd.Config{Prefix: "/roster-examples/grpc", TTL: 5 * time.Second}
	if *endpoints != "" {
		cfg.Endpoints = strings.Split(*endpoints, ",")
	} else {
		srv, err := embedded.New()
		if err != nil {
			return err
		}
		defer srv.Close()
		cfg.Endpoints = srv.Endpoints()
		say("Started an embedded etcd at %s", cfg.Endpoints[0])
	}

	// The servers, each with a backend of its own, as separate processes
	// would have.
	servers := map[string]*greeterServer{}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	startServer := func(name string) error {
		c := cfg
		c.Logger = logger.Named(name)
		s, err := startGreeter(ctx, name, c)
		if err != nil {
			return err
		}
		servers[name] = s
		say("%s serves on %s and is registered as %s/%s", name, s.addr, service, name)
		return nil
	}

	// The client: a backend of its own for resolving, and the resolver
	// builder handed to this one ClientConn.
	ccfg := cfg
	ccfg.Logger = logger.Named("client")
	clientBackend, err := etcd.New(ccfg)
	if err != nil {
		return err
	}
	defer clientBackend.Close()
	builder, err := grpcresolver.NewBuilder(clientBackend, grpcresolver.WithLogger(logger.Named("client")))
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient("roster:///"+service,
		grpc.WithResolvers(builder),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &client{conn: conn, say: say}

	for _, name := range []string{"server-1", "server-2"} {
		if err := startServer(name); err != nil {
			return interrupted(ctx, err)
		}
	}
	say("The client dials roster:///%s with round_robin", service)
	if err := c.round(ctx, "server-1", "server-2"); err != nil {
		return interrupted(ctx, err)
	}

	if err := startServer("server-3"); err != nil {
		return interrupted(ctx, err)
	}
	if err := c.round(ctx, "server-1", "server-2", "server-3"); err != nil {
		return interrupted(ctx, err)
	}

	say("Stopping server-2: it leaves the registry first, and stops serving once the client has moved on")
	if err := servers["server-2"].deregister(ctx); err != nil {
		return interrupted(ctx, err)
	}
	if err := c.round(ctx, "server-1", "server-3"); err != nil {
		return interrupted(ctx, err)
	}
	servers["server-2"].stop()
	delete(servers, "server-2")
	say("server-2 stopped")
	if err := c.round(ctx, "server-1", "server-3"); err != nil {
		return interrupted(ctx, err)
	}
	say("Done")
	return nil
}

// interrupted turns an error caused by Ctrl+C into a clean exit.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// client calls the greeters through one ClientConn.
type client struct {
	conn *grpc.ClientConn
	say  func(string, ...any)
}

// call makes one SayHello call and returns the reply.
func (c *client) call(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	err := c.conn.Invoke(ctx, sayHelloMethod, wrapperspb.String("roster"), out)
	return out.GetValue(), err
}

// round waits until the client's calls are spread over exactly want (the
// resolver learns of changes through its watch, and round_robin connects
// to new servers in the background), then prints two calls per server.
func (c *client) round(ctx context.Context, want ...string) error {
	n := 2 * len(want)
	var recent []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		reply, err := c.call(ctx)
		if err != nil {
			return err
		}
		recent = append(recent, serverOf(reply))
		if len(recent) > n {
			recent = recent[1:]
		}
		if len(recent) == n && sameSet(recent, want) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("calls still answered by %v; want %v", recent, want)
		}
		if err := retry.Sleep(ctx, 10*time.Millisecond, nil); err != nil {
			return err
		}
	}
	c.say("%d calls over %d servers:", n, len(want))
	for range n {
		reply, err := c.call(ctx)
		if err != nil {
			return err
		}
		c.say("  SayHello -> %q", reply)
	}
	return nil
}

func serverOf(reply string) string {
	_, server, _ := strings.Cut(reply, "from ")
	return server
}

func sameSet(got, want []string) bool {
	for _, g := range got {
		if !slices.Contains(want, g) {
			return false
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// greeterServer is one greeter process: a gRPC server and the etcd
// backend that keeps it registered.
type greeterServer struct {
	name    string
	addr    string
	grpc    *grpc.Server
	served  chan struct{}
	backend *etcd.Backend
}

func startGreeter(ctx context.Context, name string, cfg etcd.Config) (*greeterServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer()
	gs.RegisterService(&greeterServiceDesc, greeter{name: name})
	s := &greeterServer{name: name, addr: lis.Addr().String(), grpc: gs, served: make(chan struct{})}
	go func() {
		defer close(s.served)
		_ = gs.Serve(lis)
	}()
	// Serving first, registered second.
	s.backend, err = etcd.New(cfg)
	if err == nil {
		err = s.backend.Register(ctx, discovery.Instance{Service: service, ID: name, Address: s.addr})
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// deregister removes the server from the registry; it keeps serving.
func (s *greeterServer) deregister(ctx context.Context) error {
	return s.backend.Deregister(ctx, discovery.Instance{Service: service, ID: s.name})
}

// stop leaves the registry (if still there) and stops serving.
func (s *greeterServer) stop() {
	if s.backend != nil {
		_ = s.backend.Close()
	}
	s.grpc.GracefulStop()
	<-s.served
}

// The greeter service, written by hand since there is no protoc here: one
// unary method taking and returning a google.protobuf.StringValue, which
// grpc's default proto codec marshals.
const sayHelloMethod = "/roster.examples.Greeter/SayHello"

type greeterService interface {
	SayHello(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type greeter struct{ name string }

func (g greeter) SayHello(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if in.GetValue() == "" {
		return nil, errors.New("empty name")
	}
	return wrapperspb.String(fmt.Sprintf("hello %s, from %s", in.GetValue(), g.name)), nil
}

var greeterServiceDesc = grpc.ServiceDesc{
	ServiceName: "roster.examples.Greeter",
	HandlerType: (*greeterService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "SayHello",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(greeterService).SayHello(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: sayHelloMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(greeterService).SayHello(ctx, req.(*wrapperspb.StringValue))
			})
		},
	}},
}
