package statushttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/statushttp"
)

// TestConditionIsShownNotJudged: an instance published not ready (a
// failing health check) is reported with its condition and reason, and
// the process stays ready: the probe rule reads the registration, not the
// condition.
func TestConditionIsShownNotJudged(t *testing.T) {
	t.Parallel()
	b, err := memory.New(memory.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, in := range []discovery.Instance{
		{Service: "payments", ID: "p-1", Address: "10.0.0.1:80", Condition: discovery.ConditionNotReady, Reason: "database unreachable"},
		{Service: "payments", ID: "p-2", Address: "10.0.0.2:80"},
	} {
		if err := b.Register(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	url := serve(t, statushttp.New(b))
	got := get(t, http.MethodGet, url, "")
	if got.code != http.StatusOK || !strings.HasPrefix(got.body, "ready: ") ||
		!strings.Contains(got.body, `payments/p-1 at 10.0.0.1:80: registered since `) ||
		!strings.Contains(got.body, `; publishes not_ready "database unreachable"`+"\n") {
		t.Errorf("text: %d\n%s\nwant ready, p-1 registered and publishing not_ready with its reason", got.code, got.body)
	}
	if line := strings.Split(got.body, "\n")[2]; strings.Contains(line, "publishes") {
		t.Errorf("serving p-2's line %q mentions a condition", line)
	}
	got = get(t, http.MethodGet, url+"?format=json", "")
	var rep statushttp.Report
	if err := json.Unmarshal([]byte(got.body), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Ready || len(rep.Registrations) != 2 || rep.Registrations[0].Condition != "not_ready" ||
		rep.Registrations[0].ConditionReason != "database unreachable" || rep.Registrations[1].Condition != "" {
		t.Errorf("JSON report %+v", rep)
	}
	if strings.Count(got.body, `"condition"`) != 1 {
		t.Errorf("JSON %s: want a condition for p-1 only", got.body)
	}
}
