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

// The view of a registry, served over HTTP: the page at /, the state as
// server-sent events at /events. Any backend that implements
// discovery.OperatorView can be shown, here the memory backend.
func Example() {
	b, err := memory.New(memory.NewStore())
	if err != nil {
		panic(err)
	}
	defer b.Close()
	err = b.Register(context.Background(), discovery.Instance{
		Service: "payments", ID: "p-1", Address: "10.0.0.7:8080", Metadata: map[string]string{"version": "1.4.2"},
		Condition: discovery.ConditionDraining, Reason: "deploy 42", Zone: "eu-west-1a",
	})
	if err != nil {
		panic(err)
	}

	h, err := webui.New(b, webui.WithName("example"))
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
					ID, Address       string
					Metadata          [][2]string
					Condition, Reason string
					Weight            int
					Zone              string
				}
			}
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			panic(err)
		}
		if len(ev.Services) > 0 {
			in := ev.Services[0].Instances[0]
			fmt.Println(ev.Services[0].Name, in.ID, in.Address, in.Metadata)
			fmt.Println(in.Condition, in.Reason, in.Weight, in.Zone)
			break
		}
	}
	// Output:
	// payments p-1 10.0.0.7:8080 [[version 1.4.2]]
	// draining deploy 42 100 eu-west-1a
}
