package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/roster-sd/roster/backends"
	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/nats"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/hostcheck"
	"github.com/roster-sd/roster/internal/webui"
)

// defaultUIListen is where roster ui and roster dev --ui serve the web
// view unless told otherwise: loopback only.
const defaultUIListen = "127.0.0.1:8500"

func (a *app) uiCmd() *cobra.Command {
	var (
		listen     string
		allowHosts []string
	)
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve a live web view of the registry",
		Long: `ui serves a web page that shows every service of the registry with its
instance count, and each instance's ID, address, condition (a badge: serving,
not ready, draining or maintenance, with its reason), weight, zone, metadata
and the time left on its lease (NATS: on its key), updated live as instances come and go
(server-sent events fed by watches, not by polling), whether the registry
can be reached right now, and a filter box. It reaches etcd or NATS with the
same connection flags and ROSTER_* variables as the other commands, and
serves until Ctrl+C.

The page is read-only and self-contained (served from the binary, no other
site is contacted). It listens on 127.0.0.1 unless --listen says otherwise;
anyone who can reach another address can read the registry, so ui warns
when it is not loopback. It answers requests that name it by an IP
address, localhost, the --listen host, or a name given with --allow-host,
and refuses any other name (a web page could otherwise read it through
DNS rebinding). Whatever the registry holds is shown as text,
never interpreted as markup.

roster dev --ui serves the same page next to a development registry.`,
		Example: `  roster ui
  roster ui --listen 127.0.0.1:9000 --endpoints 10.0.0.1:2379 --prefix /team-a/services
  roster ui --listen 0.0.0.0:8500 --allow-host roster.internal.example
  roster ui --backend nats --endpoints nats://10.0.0.1:4222`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hosts, err := uiHosts(listen, allowHosts)
			if err != nil {
				return err
			}
			ln, err := a.listenUI(listen)
			if err != nil {
				return err
			}
			defer ln.Close()
			r, s, err := a.newRegistry(cmd.Context(), cmd.Flags())
			if err != nil {
				return err
			}
			defer r.Close()
			return a.serveUI(cmd.Context(), ln, r, s.describe(r), s.timeout(), s.logger(), hosts)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", defaultUIListen, "serve the web view on this host:port (port 0: any free port)")
	cmd.Flags().StringSliceVar(&allowHosts, "allow-host", nil, "a host name the web view is reached by, besides IP addresses and localhost (repeat or comma-separate; requests naming other hosts are refused, against DNS rebinding)")
	return cmd
}

// listenUI listens on addr for the web view, warning when it is not a
// loopback address.
func (a *app) listenUI(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, inputErrorf("invalid web view address %q: want host:port, e.g. %s", addr, defaultUIListen)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot serve the web view on %s (is another roster ui running? choose another address): %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		shown := addr
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
			shown = net.JoinHostPort(host, strconv.Itoa(tcp.Port))
		}
		a.warnf("the web view listens on %s, not only on loopback: whoever can reach it can read the registry", shown)
	}
	return ln, nil
}

// serveUI serves the web view of the registry that view sees on ln until
// ctx ends, then ends its streams and stops. name says which registry the
// page shows; timeout bounds each read of the registry; hosts are the
// names it may be reached by besides IP addresses and localhost.
func (a *app) serveUI(ctx context.Context, ln net.Listener, view discovery.OperatorView, name string, timeout time.Duration, log hclog.Logger, hosts []string) error {
	h, err := webui.New(view, webui.WithName(name), webui.WithRequestTimeout(timeout), webui.WithLogger(log.Named("webui")),
		webui.WithAllowedHosts(hosts...))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(a.stdout, "web view on %s (read-only; press Ctrl+C to stop)\n", uiURL(ln.Addr()))

	select {
	case <-ctx.Done():
	case err := <-served:
		_ = h.Close()
		return fmt.Errorf("serve the web view: %w", err)
	}
	_ = h.Close() // ends the event streams, so that Shutdown need not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the web view: %w", err)
	}
	return nil
}

// uiURL is the address to open in a browser: an unspecified address
// (0.0.0.0, ::) is shown as 127.0.0.1.
func uiURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String() + "/"
	}
	ip := tcp.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port)) + "/"
}

// devUI serves the web view of the development registry (backend) at
// endpoint on ln, for roster dev --ui, until ctx ends; it returns a channel
// that yields the result once it has stopped.
func (a *app) devUI(ctx context.Context, ln net.Listener, backend, endpoint string, log hclog.Logger) (<-chan error, error) {
	s := settings{backend: backend}
	s.etcd.Endpoints, s.nats.Endpoints = []string{endpoint}, []string{endpoint}
	s.etcd.Logger, s.nats.Logger = log, log
	s = s.withDefaults()
	var r registry
	var err error
	if backend == backends.NATS {
		var b *nats.Backend
		if b, err = nats.New(s.nats); err == nil {
			r = b
		}
	} else {
		var b *etcd.Backend
		if b, err = etcd.New(s.etcd); err == nil {
			r = b
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect the web view to %s: %w", s.registryName(), err)
	}
	done := make(chan error, 1)
	go func() {
		defer r.Close()
		done <- a.serveUI(ctx, ln, r, "roster dev: "+s.describe(r), s.timeout(), log, nil)
	}()
	return done, nil
}

// uiHosts returns the host names the web view answers for besides IP
// addresses and localhost: those of --allow-host, and the --listen host
// if it is a name.
func uiHosts(listen string, allow []string) ([]string, error) {
	var hosts []string
	for _, h := range allow {
		h = strings.TrimSpace(h)
		if err := hostcheck.ValidName(h); err != nil {
			return nil, inputErrorf("invalid --allow-host %q: want a host name without a port, e.g. roster.example.com", h)
		}
		hosts = append(hosts, h)
	}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" && net.ParseIP(host) == nil && hostcheck.ValidName(host) == nil {
		hosts = append(hosts, host)
	}
	return hosts, nil
}
