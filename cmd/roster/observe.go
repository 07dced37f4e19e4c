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
// the returned stop is called, answering requests that name an IP
// address, localhost or one of hosts (statushttp.GuardHosts). It prints
// the URL on stderr once it listens. The metrics' collector is returned
// too, for the health checks to report to (metrics.Collector.ObserveCheck).
func (a *app) serveObservability(addr string, b discovery.StatusReporter, hosts []string) (col *metrics.Collector, stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--http: %w", err)
	}
	col = metrics.New(b)
	reg := prometheus.NewRegistry()
	if err := reg.Register(col); err != nil {
		col.Close()
		lis.Close()
		return nil, nil, fmt.Errorf("--http: register metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/status", statushttp.New(b))
	guarded, err := statushttp.GuardHosts(mux, hosts...) // against DNS rebinding
	if err != nil {
		col.Close()
		lis.Close()
		return nil, nil, fmt.Errorf("--allow-host: %w", err)
	}
	srv := &http.Server{Handler: guarded, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.warnf("--http: %v", err)
		}
	}()
	url := "http://" + lis.Addr().String()
	fmt.Fprintf(a.stderr, "serving %s/metrics and %s/status\n", url, url)
	return col, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // bounded: scrapes are short
		<-done
		col.Close()
	}, nil
}
