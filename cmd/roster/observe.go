package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/metrics"
	"github.com/roster-sd/roster/statushttp"
)

// serveObservability serves, at addr, roster's metrics of b at /metrics
// (on a registry of its own) and its status endpoint at /status, until
// the returned stop is called. It prints the URL on stderr once it
// listens.
func (a *app) serveObservability(addr string, b discovery.StatusReporter) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	col := metrics.New(b)
	reg := prometheus.NewRegistry()
	if err := reg.Register(col); err != nil {
		col.Close()
		lis.Close()
		return nil, fmt.Errorf("--http: register metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/status", statushttp.New(b))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.warnf("--http: %v", err)
		}
	}()
	url := "http://" + lis.Addr().String()
	fmt.Fprintf(a.stderr, "serving %s/metrics and %s/status\n", url, url)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // bounded: scrapes are short
		<-done
		col.Close()
	}, nil
}
