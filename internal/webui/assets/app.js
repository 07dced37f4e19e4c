// The roster web view. It follows the server's event stream ("events"):
// "state" (the whole state, when the stream opens), then "services" (the
// whole set of each service that changed), "leases" (leases read again)
// and "status". It builds the page with textContent only: whatever the
// registry holds is shown as text, never parsed as markup.
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

  let registry = null;        // the registry's name; null until the first state
  let status = null;          // the server's status of the registry
  const services = new Map(); // name -> instances, sorted by ID
  const leases = new Map();   // lease ID -> { at: when it counts down to 0 (performance.now() ms), granted, expired }
  let lost = false;           // the stream to the server is broken
  let ttlCells = [];          // [cell, lease ID] of the rendered TTL cells

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  // formatTTL shows ms as whole seconds, rounded up, as roster ls counts
  // them (etcd gives whole seconds).
  function formatTTL(ms) {
    let s = Math.ceil(ms / 1000);
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    s -= m * 60;
    return m + "m " + String(s).padStart(2, "0") + "s";
  }

  function setLease(id, l) {
    if (l === null || l === undefined) {
      leases.delete(id);
      return;
    }
    leases.set(id, { at: performance.now() + l.ttl_ms, granted: l.granted_ms || 0, expired: !!l.expired });
  }

  // tick updates the TTL cells. A lease counts down from its last read;
  // one that reaches 0 unread is "not read recently" (it may well have
  // been renewed), never "expired" unless the server read it so. It is
  // low once less than a third of its TTL is left: a renewal (every third
  // of it, for roster's processes) is late.
  function tick() {
    const now = performance.now();
    for (const [cell, id] of ttlCells) {
      const l = leases.get(id);
      let text, title = "", kind = "";
      if (l === undefined) {
        text = "…";
        title = "not read yet";
        kind = "unread";
      } else if (l.expired) {
        text = "expired";
        kind = "low";
      } else if (l.at - now <= 0) {
        text = "not read recently";
        title = "the lease was not read again before its last reading ran out";
        kind = "unread";
      } else {
        const left = l.at - now;
        text = formatTTL(left);
        if (l.granted > 0) {
          title = "of " + formatTTL(l.granted);
          if (left < l.granted / 3) kind = "low";
        }
      }
      if (cell.textContent !== text) cell.textContent = text;
      cell.title = title;
      cell.classList.toggle("low", kind === "low");
      cell.classList.toggle("unread", kind === "unread");
    }
  }

  function onState(data) {
    const st = JSON.parse(data);
    lost = false;
    registry = st.registry;
    status = st.status;
    services.clear();
    for (const svc of st.services) services.set(svc.name, svc.instances);
    leases.clear();
    for (const [id, l] of Object.entries(st.leases)) setLease(id, l);
    render();
  }

  function onServices(data) {
    for (const svc of JSON.parse(data).services) {
      if (svc.instances.length === 0) services.delete(svc.name);
      else services.set(svc.name, svc.instances);
    }
    render();
  }

  function onLeases(data) {
    for (const [id, l] of Object.entries(JSON.parse(data).leases)) setLease(id, l);
    tick();
  }

  function onStatus(data) {
    status = JSON.parse(data);
    render();
  }

  function renderStatus() {
    const st = $("status");
    st.replaceChildren();
    let kind;
    if (lost) {
      kind = "lost";
      st.append(el("strong", null, "roster ui unreachable"), el("span", "detail", "reconnecting… (showing the last state received)"));
    } else if (status === null) {
      kind = "connecting";
      st.append(el("strong", null, "connecting…"));
    } else if (status.reachable) {
      kind = "ok";
      st.append(el("strong", null, "registry reachable"), el("span", "detail", "live"));
    } else {
      kind = "down";
      // since: when roster ui first found it unreachable, by its clock.
      st.append(el("strong", null, "registry unreachable"),
        el("span", "detail", "since " + new Date(status.since).toLocaleTimeString() + (status.problem ? ": " + status.problem : "")));
    }
    st.dataset.state = kind;
    if (kind === "down") st.dataset.since = String(status.since);
    else delete st.dataset.since;
    document.body.classList.toggle("stale", kind === "lost" || kind === "down");
    const note = $("note");
    note.textContent = status && status.note ? status.note : "";
    note.hidden = !(status && status.note);
  }

  // conditionOf is the instance's condition: serving when the server
  // omits it.
  function conditionOf(inst) {
    return inst.condition || "serving";
  }

  // conditionLabels are the badges' texts.
  const conditionLabels = { serving: "serving", not_ready: "not ready", draining: "draining", maintenance: "maintenance" };

  function matches(inst, q) {
    if (inst.id.toLowerCase().includes(q) || inst.address.toLowerCase().includes(q)) return true;
    const cond = conditionOf(inst);
    if (cond.includes(q) || (conditionLabels[cond] || "").includes(q)) return true;
    if ((inst.reason || "").toLowerCase().includes(q) || (inst.zone || "").toLowerCase().includes(q)) return true;
    for (const [k, v] of inst.metadata) {
      if (k.toLowerCase().includes(q) || v.toLowerCase().includes(q) || (k + "=" + v).toLowerCase().includes(q)) return true;
    }
    return false;
  }

  function instanceRow(inst) {
    const tr = el("tr", "instance");
    tr.dataset.id = inst.id;
    const id = el("td", "id", inst.id);
    id.dataset.label = "ID";
    const addr = el("td", "address", inst.address);
    addr.dataset.label = "address";
    // The condition as a badge, with the reason beside it.
    const cond = conditionOf(inst);
    const condCell = el("td", "condition");
    condCell.dataset.label = "condition";
    const badge = el("span", "badge", conditionLabels[cond] || cond);
    badge.dataset.condition = cond;
    condCell.append(badge);
    if (inst.reason) condCell.append(el("span", "reason", inst.reason));
    const weight = el("td", "weight", String(inst.weight));
    weight.dataset.label = "weight";
    const zone = el("td", "zone", inst.zone || "—");
    zone.dataset.label = "zone";
    if (!inst.zone) zone.classList.add("none");
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
    if (inst.lease) {
      ttl.dataset.lease = inst.lease;
      ttlCells.push([ttl, inst.lease]);
    } else {
      ttl.textContent = "—";
      ttl.title = "no lease";
    }
    tr.dataset.condition = cond;
    tr.append(id, addr, condCell, weight, zone, meta, ttl);
    return tr;
  }

  function render() {
    renderStatus();
    if (registry === null) return;
    $("registry").textContent = registry;
    const q = $("filter").value.trim().toLowerCase();
    const frag = document.createDocumentFragment();
    ttlCells = [];
    let total = 0, matching = 0, shownServices = 0;
    const names = [...services.keys()].sort();
    for (const name of names) {
      const all = services.get(name);
      total += all.length;
      const every = q === "" || name.toLowerCase().includes(q);
      const insts = every ? all : all.filter((i) => matches(i, q));
      if (insts.length === 0) continue;
      shownServices++;
      matching += insts.length;

      const sec = el("section", "service");
      sec.dataset.service = name;
      const h2 = el("h2");
      h2.append(el("span", "name", name), el("span", "count", plural(all.length, "instance", "instances")));
      const table = el("table");
      const head = el("tr");
      for (const h of ["ID", "address", "condition", "weight", "zone", "metadata", "TTL"]) head.append(el("th", null, h));
      const thead = el("thead");
      thead.append(head);
      const tbody = el("tbody");
      for (const inst of insts) tbody.append(instanceRow(inst));
      table.append(thead, tbody);
      const wrap = el("div", "table");
      wrap.append(table);
      sec.append(h2, wrap);
      frag.append(sec);
    }
    if (services.size === 0) {
      if (!status.loaded) {
        // Nothing is known yet: not the same as nothing registered.
        frag.append(el("p", "empty", "The registry has not been read yet."));
      } else if (status.reachable) {
        const p = el("p", "empty", "No services registered yet. Register one, e.g. ");
        p.append(el("code", null, "roster register --service payments --address 127.0.0.1:8080"));
        frag.append(p);
      } else {
        frag.append(el("p", "empty", "No services when the registry was last read."));
      }
    } else if (shownServices === 0) {
      frag.append(el("p", "empty", "Nothing matches the filter."));
    }
    $("services").replaceChildren(frag);
    let summary = plural(services.size, "service", "services") + " · " + plural(total, "instance", "instances");
    if (q !== "") summary = "showing " + matching + " of " + plural(total, "instance", "instances");
    $("summary").textContent = summary;
    tick();
  }

  function connect() {
    const es = new EventSource("events");
    es.addEventListener("state", (e) => onState(e.data));
    es.addEventListener("services", (e) => onServices(e.data));
    es.addEventListener("leases", (e) => onLeases(e.data));
    es.addEventListener("status", (e) => onStatus(e.data));
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
    setInterval(tick, 250);
    render();
    connect();
  });
})();
