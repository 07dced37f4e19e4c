package embedded

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestWebPagesCannotReachEtcd: a page of another origin (another dev
// server on the laptop, an intranet page, a DNS-rebinding name) sends
// what a browser sends without a preflight: a text/plain POST to etcd's
// JSON gateway. etcd's embed defaults (gateway on, CORS *, any Host)
// wrote the key and let the page read the answer; the development etcd
// must write nothing, answer with no CORS header, and refuse a Host that
// is not a loopback name.
func TestWebPagesCannotReachEtcd(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	httpc := &http.Client{Timeout: 10 * time.Second}
	defer httpc.CloseIdleConnections()
	b64 := base64.StdEncoding.EncodeToString
	body := `{"key":"` + b64([]byte("/roster/services/payments/evil")) + `","value":"` + b64([]byte(`{"address":"6.6.6.6:80"}`)) + `"}`

	send := func(method, path, host, origin, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, s.ClientURL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp, string(b)
	}

	const page = "http://127.0.0.1:5173" // another local dev server
	for _, path := range []string{"/v3/kv/put", "/v3beta/kv/put", "/v3/kv/range", "/no-such-page"} {
		resp, _ := send(http.MethodPost, path, "", page, body)
		if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != "" {
			t.Errorf("POST %s: Access-Control-Allow-Origin %q; want none (the page could read the answer)", path, acao)
		}
		t.Logf("POST %s from %s: %s", path, page, resp.Status)
	}
	// The preflight a page would need for anything else is not granted.
	if resp, _ := send(http.MethodOptions, "/v3/kv/put", "", page, ""); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("OPTIONS /v3/kv/put grants origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// A DNS-rebinding page reaches 127.0.0.1 under its own name.
	port := s.clientURL.Port()
	resp, _ := send(http.MethodPost, "/v3/kv/put", "rebind.attacker.example:"+port, "http://rebind.attacker.example:"+port, body)
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("POST /v3/kv/put with Host rebind.attacker.example: %s; want 421 Misdirected Request", resp.Status)
	}
	// Loopback names still reach the health endpoint.
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port} {
		if resp, text := send(http.MethodGet, "/health", host, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /health with Host %s: %s %q; want 200", host, resp.Status, text)
		}
	}

	cli, err := clientv3.New(s.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 0 {
		t.Errorf("etcd holds %d keys after the web page's requests; want 0", got.Count)
	}
}
