package webui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/internal/webui"
)

// fixedRegistry is a webui.Registry over any discovery.Resolver whose
// services are known in advance; it has no leases.
type fixedRegistry struct {
	r        discovery.Resolver
	services []string
}

func (f fixedRegistry) Services(ctx context.Context) ([]webui.ServiceSummary, error) {
	var out []webui.ServiceSummary
	for _, s := range f.services {
		set, err := f.r.Resolve(ctx, s)
		if err != nil {
			return nil, err
		}
		if len(set) > 0 {
			out = append(out, webui.ServiceSummary{Service: s, Instances: len(set)})
		}
	}
	return out, nil
}

func (f fixedRegistry) Instances(ctx context.Context, service string) ([]webui.InstanceInfo, error) {
	set, err := f.r.Resolve(ctx, service)
	if err != nil {
		return nil, err
	}
	out := make([]webui.InstanceInfo, 0, len(set))
	for _, in := range set {
		out = append(out, webui.InstanceInfo{Instance: in})
	}
	return out, nil
}

func (f fixedRegistry) Watch(ctx context.Context, service string) (discovery.Watcher, error) {
	return f.r.Watch(ctx, service)
}

// The view of a registry, served over HTTP: the page at /, the state as
// server-sent events at /events.
func Example() {
	b, err := memory.New(memory.NewStore())
	if err != nil {
		panic(err)
	}
	defer b.Close()
	err = b.Register(context.Background(), discovery.Instance{
		Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Metadata: map[string]string{"zone": "a"},
	})
	if err != nil {
		panic(err)
	}

	h, err := webui.New(fixedRegistry{b, []string{"payments"}}, webui.WithName("example"))
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close() // first: it ends the event streams

	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	// The first event is the whole state; each next one what changed.
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Services []struct {
				Name      string
				Instances []struct {
					ID, Address string
					Metadata    [][2]string
				}
			}
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			panic(err)
		}
		if len(ev.Services) > 0 {
			in := ev.Services[0].Instances[0]
			fmt.Println(ev.Services[0].Name, in.ID, in.Address, in.Metadata)
			break
		}
	}
	// Output:
	// payments p-1 10.0.0.7:8080 [[zone a]]
}
