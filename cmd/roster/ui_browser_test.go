package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/roster-sd/roster/backends/etcd/etcdtest"
)

// screenshotEnv names the file that TestUIInBrowser writes a screenshot of
// the page to, for the README: relative paths are from the repository's
// root.
const screenshotEnv = "ROSTER_UI_SCREENSHOT"

// liveWithin is how soon a change to the registry must show on the page.
const liveWithin = time.Second

// findBrowser returns the path of a Chromium or Chrome, or skips t saying
// how to get one.
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium, chromium-browser or google-chrome on PATH, so the web view is not tested in a browser: " +
		"install one (Debian: apt-get install -y chromium) and run go test -run TestUIInBrowser ./cmd/roster, " +
		"or run .ci/run, which installs Chromium when it can")
	return ""
}

// newBrowser starts a headless browser for t and returns a context for
// one tab; both end with the test.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(1100, 640),
		chromedp.Flag("disable-gpu", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // waits for the browser to exit and removes its profile
	})
	// The first run starts the browser on this context, so that the
	// steps' shorter contexts can end without closing it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// moduleRoot returns the directory of go.mod, above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// screenshot writes a screenshot of the page to the file named by
// ROSTER_UI_SCREENSHOT, with suffix added before its extension, if the
// variable is set.
func screenshot(t *testing.T, ctx context.Context, suffix string) {
	t.Helper()
	path := os.Getenv(screenshotEnv)
	if path == "" {
		return
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(moduleRoot(t), path)
	}
	ext := filepath.Ext(path)
	path = strings.TrimSuffix(path, ext) + suffix + ext
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote a screenshot to %s", path)
}

// evil is a metadata value that would run script if the page parsed it as
// markup.
const evil = `<script>window.__rosterPwned=1</script><img src=x onerror="window.__rosterPwned=2">`

// TestUIInBrowser runs roster ui against a real etcd and reads the page in
// a headless Chromium: started while etcd is down, the page says the
// registry is unreachable since roster ui found it so, and not that no
// service is registered; the page lists the instances; an instance that
// registers (in a service shown already, or a new one) and one that leaves
// show without a reload within a second; the
// filter box narrows the list; an etcd restart shows as "registry
// unreachable" and then recovers; a metadata value holding <script> is
// shown as text and runs nothing (on an instance that leaves before the
// screenshots); a healthy 5 s lease never shows as low; the TTLs stay
// within 2 s of roster ls's; the page fits a phone's width; once
// roster ui stops, the page says it lost it and keeps the last state; a
// draining instance shows its badge with its reason, weight and zone. With
// ROSTER_UI_SCREENSHOT=docs/ui.png it also writes the README's
// screenshots: docs/ui.png on a laptop's screen, docs/ui-phone.png on a
// phone's.
func TestUIInBrowser(t *testing.T) {
	browser := findBrowser(t)
	t.Parallel()
	srv := etcdtest.Start(t)
	env := endpointEnv(srv)

	register := func(service, id, addr string, meta ...string) *proc {
		args := []string{"register", "--service", service, "--id", id, "--address", addr}
		for _, m := range meta {
			args = append(args, "--meta", m)
		}
		p := startRoster(t, env, args...)
		p.waitLine("registered " + service + "/" + id)
		return p
	}
	// roster ui starts while etcd is down.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ui := startRoster(t, env, "ui", "--listen", "127.0.0.1:0", "--timeout", "2s")
	url := uiURLOf(t, ui)
	since := regexp.MustCompile(`"since":(\d+)`).FindStringSubmatch(eventsHolding(t, url, `"reachable":false`))
	if since == nil {
		t.Fatal("the unreachable state has no since")
	}

	ctx := newBrowser(t, browser)
	// The page rebuilds its list on every state it receives, so conditions
	// are checked inside the page, each in one go (a node chromedp found
	// may be replaced before it reads it).
	jsString := func(s string) string {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	poll := func(predicate string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(5*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))
	}
	present := func(sel string) chromedp.Action[chromedp.Void] {
		return poll(`document.querySelector(` + jsString(sel) + `) !== null`)
	}
	absent := func(sel string) chromedp.Action[chromedp.Void] {
		return poll(`document.querySelector(` + jsString(sel) + `) === null`)
	}
	row := func(id string) string { return `tr[data-id="` + id + `"]` }
	// Each step is bounded: a wait that fails says which, in time.
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, waitTimeout) }
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			// What the page showed, to tell why.
			dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
			defer dcancel()
			shown, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v; the page showed:\n%s", what, err, shown)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Evaluate[string](
			`(() => { const e = document.querySelector(`+jsString(sel)+`); return e === null ? "(absent)" : e.textContent })()`))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(expr string) bool {
		t.Helper()
		sctx, cancel := step()
		defer cancel()
		ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return ok
	}

	// etcd down: the page says so, since when roster ui found it so (not
	// when the page opened), and does not claim that no service is
	// registered.
	do("open the page with etcd down", chromedp.EmulateViewport(1100, 580), chromedp.Navigate(url),
		present(`#status[data-state="down"]`))
	if got := text("#services"); strings.Contains(got, "No services registered") || !strings.Contains(got, "not been read") {
		t.Errorf("with etcd down at start the page shows %q; want that the registry has not been read", got)
	}
	if got := text(`#status`); !strings.Contains(got, "registry unreachable") {
		t.Errorf("status %q with etcd down", got)
	}
	if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status").dataset.since`)); got != since[1] {
		t.Errorf("the page shows the outage since %s, want since %s (when roster ui found it)", got, since[1])
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	do("see etcd reachable, no service", present(`#status[data-state="ok"]`))
	do("see that no service is registered", poll(`document.getElementById("services").textContent.includes("No services registered yet")`))

	register("orders", "o-1", "10.0.1.11:9090", "zone=eu-west-1a", "version=2.0.1")
	register("orders", "o-2", "10.0.1.12:9090", "zone=eu-west-1b", "version=2.0.1")
	register("payments", "p-1", "10.0.0.7:8080", "zone=eu-west-1a", "version=1.4.2")
	// Markup in metadata, on an instance of its own: it never shows in
	// the screenshots.
	hostile := register("scratch", "x-1", "10.0.9.9:1", "note="+evil)
	// A healthy instance with a 5 s lease.
	short := startRoster(t, env, "register", "--service", "search", "--id", "s-1", "--address", "10.0.3.1:7700",
		"--meta", "zone=eu-west-1a", "--meta", "version=0.9.0", "--ttl", "5s")
	short.waitLine("registered search/s-1")

	// The page shows every instance, with its lease's TTL counting down.
	do("see the instances",
		present(row("p-1")), present(row("o-1")), present(row("o-2")),
		present(`#status[data-state="ok"]`))
	if got := text(`section[data-service="orders"] h2 .count`); got != "2 instances" {
		t.Errorf("orders count %q, want 2 instances", got)
	}
	if got := text(`tr[data-id="o-1"] td.address`); got != "10.0.1.11:9090" {
		t.Errorf("o-1 address %q", got)
	}
	do("see p-1's TTL", poll(`/^\d+s$/.test(document.querySelector('tr[data-id="p-1"] td.ttl')?.textContent ?? "")`))
	if got := text(`tr[data-id="p-1"] td.ttl`); !regexp.MustCompile(`^(1[0-5]|[5-9])s$`).MatchString(got) {
		t.Errorf("p-1 TTL %q, want the seconds left on a 15 s lease", got)
	}
	if got := text(`#registry`); !strings.Contains(got, srv.Endpoints()[0]) || !strings.Contains(got, "/roster/services") {
		t.Errorf("registry %q, want the endpoint and the prefix", got)
	}

	// Each instance's condition is a badge, with its reason, weight and
	// zone: p-1 serving; a draining instance, written by another tool, with
	// its reason.
	cli := etcdtest.Client(t, srv)
	pctx, pcancel := context.WithTimeout(context.Background(), waitTimeout)
	_, err := cli.Put(pctx, "/roster/services/checkout/c-1",
		`{"service":"checkout","id":"c-1","address":"10.0.4.1:8443","condition":"draining","reason":"deploy 42: <b>leaving</b>","weight":30,"zone":"eu-west-1c"}`)
	pcancel()
	if err != nil {
		t.Fatal(err)
	}
	do("see the draining instance", present(`tr[data-id="c-1"] .badge[data-condition="draining"]`))
	if got := text(`tr[data-id="c-1"] td.condition .badge`); got != "draining" {
		t.Errorf("c-1's badge %q, want draining", got)
	}
	if got := text(`tr[data-id="c-1"] td.condition .reason`); got != "deploy 42: <b>leaving</b>" {
		t.Errorf("c-1's reason shown as %q, want it as text", got)
	}
	if got := text(`tr[data-id="c-1"] td.weight`) + " " + text(`tr[data-id="c-1"] td.zone`); got != "30 eu-west-1c" {
		t.Errorf("c-1's weight and zone %q, want 30 eu-west-1c", got)
	}
	if !eval(`getComputedStyle(document.querySelector('tr[data-id="c-1"] .badge')).color !== getComputedStyle(document.querySelector('tr[data-id="p-1"] .badge')).color`) {
		t.Error("the draining badge has the serving badge's colour")
	}
	if got := text(`tr[data-id="p-1"] td.condition .badge`) + " " + text(`tr[data-id="p-1"] td.weight`); got != "serving 100" {
		t.Errorf("p-1's badge and weight %q, want serving 100", got)
	}
	if !eval(`document.querySelectorAll("b").length === 0`) {
		t.Error("a reason was parsed as markup")
	}

	// Markup in metadata is text: shown as written, and nothing ran.
	do("see the hostile instance", present(row("x-1")))
	meta := text(`tr[data-id="x-1"] td.metadata`)
	if !strings.Contains(meta, "note="+evil) {
		t.Errorf("x-1 metadata shown as %q, want it to hold note=%s as text", meta, evil)
	}
	if !eval(`window.__rosterPwned === undefined && document.scripts.length === 1 && document.querySelectorAll("img").length === 0`) {
		t.Error("metadata was parsed as markup: a script ran or an element was made from it")
	}
	hostile.interrupt()
	do("see the hostile instance leave", absent(row("x-1")))

	// From now on, record whether the 5 s lease of s-1, renewed on time,
	// ever shows as low; and how far p-1's TTL is from roster ls's.
	eval(`(() => { window.__lowSeen = ""; setInterval(() => {
		const c = document.querySelector('tr[data-id="s-1"] td.ttl');
		if (c && c.classList.contains("low")) window.__lowSeen = c.textContent; }, 50); return true })()`)
	// lsGap compares p-1's TTL in roster ls with the page's, read right
	// after: the smallest gap of up to five tries, since on a loaded
	// machine a renewal (or a slow start of roster ls) may fall between
	// the two reads, while an offset of the page's own (the defect this
	// guards against: 4-5 s below roster ls) shows in every try.
	lsGap := func() time.Duration {
		t.Helper()
		best := time.Duration(-1)
		for range 5 {
			r := runRoster(t, env, "ls", "payments")
			page := text(`tr[data-id="p-1"] td.ttl`)
			m := regexp.MustCompile(`(?m)^p-1 .* (\d+)$`).FindStringSubmatch(r.stdout)
			ps, err := time.ParseDuration(page)
			if m == nil || err != nil {
				t.Fatalf("roster ls:\n%s\npage: %q", r.stdout, page)
			}
			ls, _ := time.ParseDuration(m[1] + "s")
			if gap := (ls - ps).Abs(); best < 0 || gap < best {
				best = gap
			}
			if best <= time.Second {
				break
			}
		}
		return best
	}
	gap := lsGap()

	// A new instance appears, without a reload, within a second.
	eval(`window.__sameDocument = true`)
	p2 := register("payments", "p-2", "10.0.0.8:8080", "zone=eu-west-1b", "version=1.4.2")
	start := time.Now()
	do("see p-2 appear", present(row("p-2")))
	took := time.Since(start)
	t.Logf("p-2 appeared %v after roster register said it was registered", took)
	if took > liveWithin {
		t.Errorf("p-2 appeared %v after it was registered; want within %v", took, liveWithin)
	}
	if got := text(`section[data-service="payments"] h2 .count`); got != "2 instances" {
		t.Errorf("payments count %q, want 2 instances", got)
	}
	do("see p-2's TTL", poll(`/^\d+s$/.test(document.querySelector('tr[data-id="p-2"] td.ttl')?.textContent ?? "")`))
	screenshot(t, ctx, "")

	// So does the first instance of a new service.
	i1 := register("inventory", "i-1", "10.0.2.1:7070")
	start = time.Now()
	do("see a new service appear", present(`section[data-service="inventory"] tr[data-id="i-1"]`))
	took = time.Since(start)
	t.Logf("a new service appeared %v after roster register said it was registered", took)
	if took > liveWithin {
		t.Errorf("a new service appeared %v after it was registered; want within %v", took, liveWithin)
	}
	i1.interrupt()
	do("see the new service leave", absent(`section[data-service="inventory"]`))

	// The filter narrows the list to what matches.
	do("filter", chromedp.SendKeys(chromedp.CSS("#filter"), "zone=eu-west-1b"),
		absent(row("p-1")), absent(row("o-1")))
	if !eval(`document.querySelector('tr[data-id="p-2"]') !== null && document.querySelector('tr[data-id="o-2"]') !== null`) {
		t.Error("the filter hid instances that match it")
	}
	eval(`(() => { const f = document.getElementById("filter"); f.value = ""; f.dispatchEvent(new Event("input")); return true })()`)
	do("clear the filter", present(row("p-1")))

	// An instance that leaves disappears, without a reload, within a second.
	p2.interrupt() // revokes its lease
	start = time.Now()
	do("see p-2 leave", absent(row("p-2")))
	took = time.Since(start)
	t.Logf("p-2 left the page %v after its registrar exited", took)
	if took > liveWithin {
		t.Errorf("p-2 left the page %v after its registrar exited; want within %v", took, liveWithin)
	}

	// The page's TTLs follow roster ls's; a 5 s lease renewed on time
	// never read as low.
	gap = max(gap, lsGap())
	t.Logf("p-1's TTL on the page and in roster ls differed by %v at most", gap)
	if gap > 2*time.Second {
		t.Errorf("p-1's TTL on the page was %v from roster ls's; want within 2s", gap)
	}
	if low := eval(`window.__lowSeen === ""`); !low {
		seen, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__lowSeen`))
		t.Errorf("the healthy 5 s lease of s-1 was shown as low (%s)", seen)
	}
	short.interrupt()

	// An etcd restart shows as unreachable, then the page recovers.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	do("see etcd unreachable", present(`#status[data-state="down"]`))
	t.Logf("the page showed etcd unreachable %v after it stopped", time.Since(start))
	if got := text("#status"); !strings.Contains(got, "registry unreachable") {
		t.Errorf("status %q during the outage", got)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	do("see etcd back", present(`#status[data-state="ok"]`), present(row("p-1")))
	t.Logf("the page showed etcd reachable %v after it restarted", time.Since(start))
	if !eval(`window.__sameDocument === true`) {
		t.Error("the page was reloaded")
	}
	p3 := register("payments", "p-3", "10.0.0.9:8080")
	do("see p-3 appear after the restart", present(row("p-3")))
	p3.interrupt()

	// A phone: nothing wider than the screen.
	do("phone viewport", chromedp.EmulateViewport(390, 800), present(row("p-1")))
	if !eval(`document.documentElement.scrollWidth <= 390`) {
		w, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		t.Errorf("on a 390 px wide screen the page is %d px wide", w)
	}
	screenshot(t, ctx, "-phone")

	// roster ui gone: the page says so, and keeps the last state.
	ui.interrupt()
	do("see roster ui gone", present(`#status[data-state="lost"]`), present(row("p-1")))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the browser test ran out of time")
	}
}
