package statushttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/roster-sd/roster/backends/memory"
	"github.com/roster-sd/roster/discovery"
	"github.com/roster-sd/roster/statushttp"
)

// The handler on a probe's path: 503 before the first registration, 200
// from then on, 503 again once deregistered.
func Example() {
	backend, err := memory.New(nil)
	if err != nil {
		panic(err)
	}
	defer backend.Close()
	mux := http.NewServeMux()
	mux.Handle("/status", statushttp.New(backend))

	probe := func() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	in := discovery.Instance{Service: "payments", ID: "p-1", Address: "10.0.0.7:8080"}
	probe()
	if err := backend.Register(context.Background(), in); err != nil {
		panic(err)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status?format=json", nil))
	fmt.Println(rec.Code)
	if err := backend.Deregister(context.Background(), in); err != nil {
		panic(err)
	}
	probe()
	// Output:
	// 503 not ready: no registration: not registered yet, or deregistered
	// backend: connected, 0 retry attempts
	// 200
	// 503 not ready: no registration: not registered yet, or deregistered
	// backend: connected, 0 retry attempts
}
