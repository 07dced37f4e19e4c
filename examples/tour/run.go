package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/roster-sd/roster/backends/etcd"
	"github.com/roster-sd/roster/backends/etcd/embedded"
	"github.com/roster-sd/roster/discovery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("tour", flag.ExitOnError)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints; empty starts an embedded etcd")
	_ = fs.Parse(os.Args[1:])
	if err := run(ctx, *endpoints, os.Stdout); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "tour:", err)
		os.Exit(1)
	}
}

// run takes the tour: each of main.go's functions in turn, against etcd at
// endpoints or an embedded one.
func run(ctx context.Context, endpoints string, stdout io.Writer) error {
	out := &lines{w: stdout, seen: make(chan string, 64)}
	eps := strings.Split(endpoints, ",")
	if endpoints == "" {
		srv, err := embedded.New()
		if err != nil {
			return err
		}
		defer srv.Close()
		eps = srv.Endpoints()
		fmt.Fprintln(out, "started an embedded etcd at", eps[0])
	}

	backend, err := register(ctx, eps)
	if err != nil {
		return err
	}
	defer backend.Close()
	fmt.Fprintln(out, "registered payments/p-1")
	if err := resolve(ctx, backend, out); err != nil {
		return err
	}

	// The status, and its subscription until the tour ends.
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBG()
	wg.Go(func() { _ = status(bg, backend, out) })
	if err := out.waitFor(ctx, "payments/p-1 registered"); err != nil {
		return err
	}

	// The metrics and the status endpoint, served while the tour lasts.
	registry := prometheus.NewRegistry()
	mux := http.NewServeMux()
	counted, stopObserving, err := observe(backend, registry, mux)
	if err != nil {
		return err
	}
	defer stopObserving()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Go(func() { _ = srv.Serve(lis) })
	defer srv.Close()
	code, body, err := get(ctx, "http://"+lis.Addr().String()+"/status")
	if err != nil {
		return err
	}
	first, _, _ := strings.Cut(body, "\n")
	fmt.Fprintf(out, "GET /status: %d %s\n", code, first)

	conn, err := dial(counted)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintln(out, "dialled", conn.Target())

	// A watch, while an fx application registers p-2 and stops.
	wg.Go(func() { _ = watch(bg, counted, out) })
	if err := out.waitFor(ctx, "payments: 1 instances"); err != nil {
		return err
	}
	app := newApp(etcd.Config{Endpoints: eps}, fx.NopLogger)
	if err := app.Start(ctx); err != nil {
		return err
	}
	if err := out.waitFor(ctx, "payments: 2 instances"); err != nil {
		_ = app.Stop(context.WithoutCancel(ctx))
		return err
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := app.Stop(stopCtx); err != nil {
		return err
	}
	if err := out.waitFor(ctx, "payments: 1 instances"); err != nil {
		return err
	}

	// An instance behind a health check: a port that accepts connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	gate, err := gated(ctx, backend, ln.Addr().String())
	if err != nil {
		return err
	}
	defer gate.Close()
	for {
		instances, err := backend.Resolve(ctx, "payments")
		if err != nil {
			return err
		}
		for _, in := range instances {
			if in.ID == "p-3" && in.Condition == discovery.ConditionServing {
				fmt.Fprintln(out, "payments/p-3 serving: its health check passed")
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// lines passes whole lines to w and lets the tour wait for one.
type lines struct {
	mu   sync.Mutex
	w    io.Writer
	seen chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		select {
		case l.seen <- sc.Text():
		default: // nobody waits for it
		}
	}
	return l.w.Write(p)
}

// waitFor waits for a line that starts with prefix.
func (l *lines) waitFor(ctx context.Context, prefix string) error {
	for {
		select {
		case line := <-l.seen:
			if strings.HasPrefix(line, prefix) {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q: %w", prefix, ctx.Err())
		}
	}
}
