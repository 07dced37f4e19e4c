package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/roster-sd/roster/internal/testing/testwait"
	"github.com/roster-sd/roster/metrics"
)

// waitFor bounds every wait for something that must happen.
const waitFor = 10 * time.Second

// endpoint serves the metrics of a pedantic registry holding col over
// HTTP, as an application's /metrics does, until the test ends.
func endpoint(t *testing.T, col *metrics.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(col); err != nil {
		t.Fatalf("Register: %v", err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// families is one scrape, parsed by the Prometheus text parser.
type families map[string]*dto.MetricFamily

// scrape GETs url and parses the answer.
func scrape(t testing.TB, url string) families {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // leave no idle connection for goleak
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// metric returns the metric of family name whose labels are exactly
// labels (name, value pairs), or nil.
func (f families) metric(name string, labels ...string) *dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		ok := true
		for _, lp := range m.GetLabel() {
			i := slices.Index(labels, lp.GetName())
			ok = ok && i >= 0 && i%2 == 0 && labels[i+1] == lp.GetValue()
		}
		if ok {
			return m
		}
	}
	return nil
}

// value returns the value of a counter or gauge, the sample count of a
// histogram, or -1 if there is no such metric.
func (f families) value(name string, labels ...string) float64 {
	m := f.metric(name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

// want is an expected value: metric name, labels, value.
type want struct {
	name   string
	labels []string
	value  float64
}

func (w want) String() string {
	return fmt.Sprintf("%s{%s} = %v", w.name, strings.Join(w.labels, ","), w.value)
}

// mismatches returns the expectations f does not meet, with what f has.
func (f families) mismatches(wants ...want) []string {
	var out []string
	for _, w := range wants {
		if got := f.value(w.name, w.labels...); got != w.value {
			out = append(out, fmt.Sprintf("%v (got %v)", w, got))
		}
	}
	return out
}

// waitMetrics scrapes url until every expectation holds, and fails t with
// the last mismatches if that does not happen within waitFor.
func waitMetrics(t *testing.T, url, what string, wants ...want) families {
	t.Helper()
	var (
		f    families
		miss []string
	)
	defer func() {
		if len(miss) > 0 {
			t.Logf("last mismatches:\n  %s", strings.Join(miss, "\n  "))
		}
	}()
	testwait.Until(t, waitFor, what, func() bool {
		f = scrape(t, url)
		miss = f.mismatches(wants...)
		return len(miss) == 0
	})
	return f
}

// registrations are the expectations of roster_registrations for service:
// n registrations in each state given as state, n pairs; 0 in the others.
func registrations(service string, counts ...any) []want {
	by := map[string]float64{}
	for i := 0; i < len(counts); i += 2 {
		by[counts[i].(string)] = float64(counts[i+1].(int))
	}
	var out []want
	for _, s := range []string{"registering", "registered", "retrying", "lost", "conflict"} {
		out = append(out, want{"roster_registrations", []string{"service", service, "state", s}, by[s]})
	}
	return out
}
