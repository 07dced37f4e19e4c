package main

import (
	"slices"
	"testing"
)

// TestBenchDefaultsScaleWithFleet: the defaults of --watchers (10) and
// --service-size (50) are lowered to what --processes and --instances
// allow, so that a small fleet runs without them; values given explicitly
// are still checked. The runs stop at an invalid -o, the check after the
// bounds and before any etcd is started: reaching it means the bounds
// passed.
func TestBenchDefaultsScaleWithFleet(t *testing.T) {
	t.Parallel()
	const pastBounds = "roster: invalid --output \"yaml\": want table or json\n"
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--processes", "20"}, pastBounds},
		{[]string{"--processes", "5"}, pastBounds},
		{[]string{"--processes", "1"}, pastBounds},
		{[]string{"--processes", "4", "--instances", "3"}, pastBounds},
		{[]string{"--processes", "20", "--service-size", "30"}, "roster: invalid --service-size 30: want 0..20 (--processes x --instances)\n"},
		{[]string{"--processes", "5", "--watchers", "6"}, "roster: invalid --watchers 6: want 0..5 (--processes)\n"},
	}
	for _, c := range cases {
		code, stdout, stderr := runInProcess(t, append([]string{"bench", "-o", "yaml"}, c.args...)...)
		if code != exitInput || stdout != "" || stderr != c.want {
			t.Errorf("bench %q: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", c.args, code, stdout, stderr, exitInput, c.want)
		}
	}
}

// TestBenchScaleDefaults checks the values the lowered defaults take.
func TestBenchScaleDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		processes, instances   int
		changed                []string
		watchers, serviceSize  int // given, before scaling
		wantWatch, wantService int
	}{
		{100, 1, nil, 10, 50, 10, 50},
		{20, 1, nil, 10, 50, 10, 20},
		{5, 1, nil, 10, 50, 5, 5},
		{4, 3, nil, 10, 50, 4, 12},
		{5, 1, []string{"watchers", "service-size"}, 7, 60, 7, 60}, // left for validate
	}
	for _, c := range cases {
		o := benchOptions{processes: c.processes, instances: c.instances, watchers: c.watchers, serviceSize: c.serviceSize}
		o.scaleDefaults(func(flag string) bool { return slices.Contains(c.changed, flag) })
		if o.watchers != c.wantWatch || o.serviceSize != c.wantService {
			t.Errorf("%d processes x %d instances, changed %q: watchers %d, service size %d; want %d, %d",
				c.processes, c.instances, c.changed, o.watchers, o.serviceSize, c.wantWatch, c.wantService)
		}
	}
}
