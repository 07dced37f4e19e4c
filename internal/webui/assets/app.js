// The roster web view. It follows the server's event stream ("events"),
// each event the whole state as JSON, and builds the page from it with
// textContent only: whatever the registry holds is shown as text, never
// parsed as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // el makes an element with an optional class and text.
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  let state = null;          // the newest state from the server
  let lost = false;          // the stream to the server is broken
  let downSince = null;      // when the registry was first seen unreachable
  const deadlines = new Map(); // service + "\0" + id -> when its lease runs out (performance.now() ms)
  let ttlCells = [];         // [cell, key] of the rendered TTL cells

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  function formatTTL(ms) {
    if (ms < 0) return "expired";
    let s = Math.floor(ms / 1000);
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    s -= m * 60;
    return m + "m " + String(s).padStart(2, "0") + "s";
  }

  function tick() {
    const now = performance.now();
    for (const [cell, key] of ttlCells) {
      const d = deadlines.get(key);
      if (d === undefined) continue;
      const left = d.expired ? -1 : Math.max(0, d.at - now);
      cell.textContent = formatTTL(left);
      cell.classList.toggle("low", left < 5000);
    }
  }

  // onState takes a new state: it stamps the TTLs' deadlines and renders.
  function onState(data) {
    state = JSON.parse(data);
    lost = false;
    const now = performance.now();
    deadlines.clear();
    for (const svc of state.services) {
      for (const inst of svc.instances) {
        if (inst.ttl_ms === null || inst.ttl_ms === undefined) continue;
        deadlines.set(svc.name + "\0" + inst.id, { at: now + inst.ttl_ms, expired: inst.ttl_ms < 0 });
      }
    }
    if (state.reachable) {
      downSince = null;
    } else if (downSince === null) {
      downSince = new Date();
    }
    render();
  }

  function renderStatus() {
    const st = $("status");
    st.replaceChildren();
    let kind;
    if (lost) {
      kind = "lost";
      st.append(el("strong", null, "roster ui unreachable"), el("span", "detail", "reconnecting… (showing the last state received)"));
    } else if (state === null) {
      kind = "connecting";
      st.append(el("strong", null, "connecting…"));
    } else if (state.reachable) {
      kind = "ok";
      st.append(el("strong", null, "registry reachable"), el("span", "detail", "live"));
    } else {
      kind = "down";
      st.append(el("strong", null, "registry unreachable"),
        el("span", "detail", "since " + downSince.toLocaleTimeString() + (state.problem ? ": " + state.problem : "")));
    }
    st.dataset.state = kind;
    document.body.classList.toggle("stale", kind === "lost" || kind === "down");
  }

  function matches(inst, q) {
    if (inst.id.toLowerCase().includes(q) || inst.address.toLowerCase().includes(q)) return true;
    for (const [k, v] of inst.metadata) {
      if (k.toLowerCase().includes(q) || v.toLowerCase().includes(q) || (k + "=" + v).toLowerCase().includes(q)) return true;
    }
    return false;
  }

  function instanceRow(svc, inst) {
    const tr = el("tr", "instance");
    tr.dataset.id = inst.id;
    const id = el("td", "id", inst.id);
    id.dataset.label = "ID";
    const addr = el("td", "address", inst.address);
    addr.dataset.label = "address";
    const meta = el("td", "metadata");
    meta.dataset.label = "metadata";
    if (inst.metadata.length === 0) {
      meta.append(el("span", "none", "—"));
    }
    for (const [k, v] of inst.metadata) {
      const kv = el("span", "kv");
      kv.append(el("span", "k", k), el("span", "eq", "="), el("span", "v", v));
      meta.append(kv);
    }
    const ttl = el("td", "ttl");
    ttl.dataset.label = "TTL";
    const key = svc.name + "\0" + inst.id;
    if (deadlines.has(key)) {
      ttlCells.push([ttl, key]);
    } else {
      ttl.textContent = "—";
      ttl.title = "no lease, or not read yet";
    }
    tr.append(id, addr, meta, ttl);
    return tr;
  }

  let shown = null; // what the list was last built from: see render

  function render() {
    renderStatus();
    if (state === null) return;
    $("registry").textContent = state.registry;
    const q = $("filter").value.trim().toLowerCase();
    // A state that differs only in TTLs (a lease read again) keeps the list
    // as it is, and with it the reader's selection: the countdowns move.
    const what = JSON.stringify([q, state.services.map((svc) => [svc.name,
      svc.instances.map((i) => [i.id, i.address, i.metadata, i.ttl_ms === null])])]);
    if (what === shown) {
      tick();
      return;
    }
    shown = what;
    const frag = document.createDocumentFragment();
    ttlCells = [];
    let total = 0, matching = 0, shownServices = 0;
    for (const svc of state.services) {
      total += svc.instances.length;
      const all = q === "" || svc.name.toLowerCase().includes(q);
      const insts = all ? svc.instances : svc.instances.filter((i) => matches(i, q));
      if (!all && insts.length === 0) continue;
      shownServices++;
      matching += insts.length;

      const sec = el("section", "service");
      sec.dataset.service = svc.name;
      const h2 = el("h2");
      const count = el("span", "count", plural(svc.instances.length, "instance", "instances"));
      h2.append(el("span", "name", svc.name), count);
      sec.append(h2);
      if (svc.instances.length === 0) {
        sec.append(el("p", "empty", "no instances"));
      } else {
        const table = el("table");
        const head = el("tr");
        for (const h of ["ID", "address", "metadata", "TTL"]) head.append(el("th", null, h));
        const thead = el("thead");
        thead.append(head);
        const tbody = el("tbody");
        for (const inst of insts) tbody.append(instanceRow(svc, inst));
        table.append(thead, tbody);
        const wrap = el("div", "table");
        wrap.append(table);
        sec.append(wrap);
      }
      frag.append(sec);
    }
    if (state.services.length === 0) {
      const p = el("p", "empty", "No services registered yet. Register one, e.g. ");
      p.append(el("code", null, "roster register --service payments --address 127.0.0.1:8080"));
      frag.append(p);
    } else if (shownServices === 0) {
      frag.append(el("p", "empty", "Nothing matches the filter."));
    }
    $("services").replaceChildren(frag);
    let summary = plural(state.services.length, "service", "services") + " · " + plural(total, "instance", "instances");
    if (q !== "") summary = "showing " + matching + " of " + plural(total, "instance", "instances");
    $("summary").textContent = summary;
    tick();
  }

  function connect() {
    const es = new EventSource("events");
    es.addEventListener("state", (e) => onState(e.data));
    es.addEventListener("error", () => {
      lost = true;
      renderStatus();
      if (es.readyState === EventSource.CLOSED) {
        // The browser gives up on a stream that was refused: retry.
        es.close();
        setTimeout(connect, 2000);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("filter").addEventListener("input", render);
    setInterval(tick, 500);
    render();
    connect();
  });
})();
