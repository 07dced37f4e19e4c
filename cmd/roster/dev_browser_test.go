package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
	"github.com/roster-sd/roster/backends/nats/natstest"
)

// attackScript is what a hostile page (here served from another
// 127.0.0.1 port) runs against the development registries: a simple
// text/plain POST to etcd's JSON gateway to register its own address, one
// to read a service back, and a cross-protocol POST to NATS whose body
// holds NATS commands. Each result says whether the page could read the
// answer ("read ...") or only send the request ("sent ...").
const attackScript = `(async () => {
	const post = async (url, body) => {
		try {
			const r = await fetch(url, {method: "POST", body});
			return "read " + r.status + " " + (await r.text()).slice(0, 300);
		} catch (e) {
			try {
				await fetch(url, {method: "POST", body, mode: "no-cors"});
				return "sent, answer unreadable (" + e + ")";
			} catch (e2) {
				return "not sent (" + e2 + ")";
			}
		}
	};
	return [
		await post(ETCD + "/v3/kv/put", PUT),
		await post(ETCD + "/v3/kv/range", RANGE),
		await post(NATS + "/", "CONNECT {\"verbose\":false}\r\nPUB roster.evil 5\r\nhello\r\nPUB $KV.roster.payments.evil 5\r\nhello\r\n"),
	].join("\n");
})()`

// TestDevRegistriesClosedToWebPages: in Chromium, a page on another
// 127.0.0.1 port can neither write to nor read from the development etcd
// (roster dev, etcdtest) through its HTTP side, and its cross-protocol
// POST to the development NATS writes nothing. The etcd half failed on
// etcd's embed defaults: the page's put answered 200 and wrote the key,
// and its range read the registry back.
func TestDevRegistriesClosedToWebPages(t *testing.T) {
	browser := findBrowser(t)
	t.Parallel()
	etcdSrv := etcdtest.Start(t)
	cli := etcdtest.Client(t, etcdSrv)
	natsSrv := natstest.Start(t)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	const secretKey = "/roster/services/payments/p-1"
	if _, err := cli.Put(ctx, secretKey, `{"address":"10.0.0.7:8080"}`); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsSrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seen, err := nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	varz := func() *server.Varz {
		t.Helper()
		v, err := natsSrv.NATS().Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	connsBefore := varz().TotalConnections

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>some other local app</title>"))
	}))
	defer page.Close()

	b64 := base64.StdEncoding.EncodeToString
	script := strings.NewReplacer(
		"ETCD", jsQuote(etcdSrv.ClientURL()),
		"NATS", jsQuote("http://"+natsSrv.Addr()),
		"PUT", jsQuote(`{"key":"`+b64([]byte("/roster/services/payments/evil"))+`","value":"`+b64([]byte(`{"address":"6.6.6.6:80"}`))+`"}`),
		"RANGE", jsQuote(`{"key":"`+b64([]byte("/roster/services/"))+`","range_end":"`+b64([]byte("/roster/services0"))+`"}`),
	).Replace(attackScript)

	bctx := newBrowser(t, browser)
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	results, err := chromedp.Run(bctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("run the page: %v", err)
	}
	t.Logf("what the page got:\n%s", results)
	lines := strings.Split(results, "\n")
	for i, what := range []string{"etcd put", "etcd range", "NATS"} {
		if strings.HasPrefix(lines[i], "read ") {
			t.Errorf("%s: the page read the answer: %s", what, lines[i])
		}
	}
	if strings.Contains(results, b64([]byte(secretKey))) {
		t.Errorf("the page read the registry's keys")
	}

	// A context of its own: starting the browser and running the page may
	// have used up the first one on a loaded machine.
	gctx, gcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer gcancel()
	got, err := cli.Get(gctx, "/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Key) != secretKey {
		var keys []string
		for _, kv := range got.Kvs {
			keys = append(keys, string(kv.Key))
		}
		t.Errorf("etcd holds %q after the page ran; want only %s", keys, secretKey)
	}

	// The page reached NATS (a connection was opened) and wrote nothing:
	// a marker published after it is the first message anyone sees.
	if after := varz().TotalConnections; after <= connsBefore {
		t.Errorf("NATS saw %d connections before the page and %d after; want the page's", connsBefore, after)
	}
	if err := nc.Publish("test.marker", nil); err != nil {
		t.Fatal(err)
	}
	msg, err := seen.NextMsg(waitTimeout)
	if err != nil {
		t.Fatalf("marker: %v", err)
	}
	if msg.Subject != "test.marker" {
		t.Errorf("NATS delivered %q (%q) from the page; want nothing", msg.Subject, msg.Data)
	}
}

// jsQuote returns s as a JavaScript string literal.
func jsQuote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
