// meshd console: polls the admin API it is served by and draws the mesh.
// No library, no build step, no request to another origin. Every value
// from the daemon goes into the page as text (textContent), never as HTML.
"use strict";
(function () {
  const POLL_MS = 2000;       // services, routes, consumers, config
  const DLQ_EVERY = 2;        // dead letters every 2nd poll
  const MAX_LETTERS = 20;     // dead letters listed per service
  const MAX_DLQ_SERVICES = 50; // services whose dead letters are read

  const $ = (id) => document.getElementById(id);
  const last = {};   // section → JSON of what it shows, to redraw only changes
  let tick = 0;
  let timer = null;
  let dlqState = {}; // service → {letters, error}

  // el makes an element with text or children; attrs set attributes.
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  // td is a cell labelled (for the phone layout) by its column.
  const td = (label, content, cls) => el("td", { "data-label": label, class: cls }, content);
  const num = (label, v, fmt) => td(label, fmt ? fmt(v) : fmtCount(v), "num");

  function fmtCount(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }
  function fmtRate(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0";
    return v < 10 ? v.toFixed(2) : v.toFixed(1);
  }
  function fmtSeconds(v) {
    if (v === null || v === undefined) return "–";
    if (v < 0.001) return (v * 1e6).toFixed(0) + " µs";
    if (v < 1) return (v * 1e3).toPrecision(3) + " ms";
    return v.toPrecision(3) + " s";
  }
  function fmtTime(s) {
    if (!s) return "–";
    const t = new Date(s);
    if (Number.isNaN(t.getTime())) return String(s);
    const ago = Math.max(0, Math.round((Date.now() - t.getTime()) / 1000));
    let rel;
    if (ago < 90) rel = ago + " s ago";
    else if (ago < 5400) rel = Math.round(ago / 60) + " min ago";
    else if (ago < 172800) rel = Math.round(ago / 3600) + " h ago";
    else rel = Math.round(ago / 86400) + " d ago";
    return el("time", { datetime: t.toISOString(), title: t.toISOString() }, rel);
  }
  // status is a badge whose word and symbol say the state without colour.
  const SYMBOL = { UP: "●", STARTING: "◐", DOWN: "✕", FAILED: "✕", OUT_OF_SERVICE: "◌",
    closed: "●", "half-open": "◐", open: "✕" };
  function status(s) {
    const word = String(s || "UNKNOWN");
    return el("span", { class: "status " + word.replace(/[^A-Za-z_-]/g, "") }, (SYMBOL[word] || "?") + " " + word);
  }
  function list(items, mono) {
    if (!items || items.length === 0) return "–";
    return el("ul", { class: "list" }, items.map((i) => el("li", { class: mono ? "mono" : null }, i)));
  }

  // getJSON fetches path from this listener; credentials (a Basic login
  // for a token) are the browser's own for this origin.
  async function getJSON(path, init) {
    const r = await fetch(path, Object.assign({ cache: "no-store", headers: { Accept: "application/json" } }, init || {}));
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!r.ok) {
      const why = (body && (body.detail || body.error || body.title)) || text.slice(0, 200) || r.statusText;
      const err = new Error(r.status + " " + why);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  // swap replaces a container's children when what it shows changed.
  function swap(id, key, build) {
    const json = JSON.stringify(key);
    if (last[id] === json) return;
    last[id] = json;
    const node = $(id);
    node.replaceChildren(...[].concat(build()));
  }
  function emptyRow(cols, text) {
    return el("tr", {}, el("td", { colspan: cols, class: "empty" }, text));
  }

  function drawServices(services) {
    swap("services-body", services, () => {
      if (services.length === 0) return emptyRow(8, "no service loaded");
      return services.map((s) => {
        const nodes = s.nodes || (s.node ? [s.node] : null);
        const inst = s.instances || { idle: 0, busy: 0 };
        return el("tr", { "data-service": s.name },
          td("Service", el("strong", {}, s.name)),
          td("Status", status(s.status)),
          td("Version", s.version ? el("code", { title: s.version }, short(s.version)) : "–"),
          td("File", s.file ? el("code", {}, s.file) : "–"),
          td("Node", list(nodes)),
          td("Instances", inst.asleep ? "asleep" : inst.idle + " idle / " + inst.busy + " busy", "num"),
          td("Routes", list(s.routes, true)),
          td("Subscriptions", list(s.subscriptions, true)));
      });
    });
  }
  function short(v) { return v.length > 24 ? v.slice(0, 12) + "…" + v.slice(-8) : v; }

  // chart draws two series (a solid, b dashed) of points on one scale.
  function chart(points, fa, fb, label) {
    const W = 120, H = 32, pad = 2;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    svg.setAttribute("preserveAspectRatio", "none");
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = label;
    svg.append(title);
    const base = document.createElementNS("http://www.w3.org/2000/svg", "line");
    base.setAttribute("class", "base");
    base.setAttribute("x1", 0); base.setAttribute("x2", W);
    base.setAttribute("y1", H - pad); base.setAttribute("y2", H - pad);
    svg.append(base);
    if (!points || points.length === 0) return svg;
    let top = 0;
    for (const p of points) top = Math.max(top, fa(p) || 0, fb(p) || 0);
    if (top <= 0) top = 1;
    const t0 = points[0].t, t1 = points[points.length - 1].t;
    const x = (t) => t1 === t0 ? W : ((t - t0) / (t1 - t0)) * W;
    const y = (v) => H - pad - (v / top) * (H - 2 * pad);
    for (const [f, cls] of [[fa, "a"], [fb, "b"]]) {
      let seg = [];
      const flush = () => {
        if (seg.length > 0) {
          if (seg.length === 1) seg.push([seg[0][0] + 0.5, seg[0][1]]); // a lone point: a dot
          const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
          pl.setAttribute("class", cls);
          pl.setAttribute("points", seg.map((q) => q[0].toFixed(1) + "," + q[1].toFixed(1)).join(" "));
          svg.append(pl);
        }
        seg = [];
      };
      for (const p of points) {
        const v = f(p);
        if (v === null || v === undefined) { flush(); continue; }
        seg.push([x(p.t), y(v)]);
      }
      flush();
    }
    return svg;
  }

  function drawRoutes(data) {
    const routes = data.routes || [];
    const key = routes.map((r) => [r.service, r.route, r.requests, r.errors, r.recent, r.points.length && r.points[r.points.length - 1].t]);
    swap("routes-body", key, () => {
      if (routes.length === 0) return emptyRow(10, "no request served yet");
      return routes.map((r) => {
        const rc = r.recent || {};
        const span = rc.seconds ? " (last " + Math.round(rc.seconds) + " s)" : "";
        return el("tr", { "data-route": r.service + " " + r.route },
          td("Service", r.service),
          td("Route", el("code", {}, r.route)),
          td("Requests", fmtCount(r.requests), "num requests"),
          td("5xx", fmtCount(r.errors), "num errors"),
          num("req/s" + span, rc.rate, fmtRate),
          num("5xx/s", rc.error_rate, fmtRate),
          num("p50", rc.p50, fmtSeconds),
          num("p99", rc.p99, fmtSeconds),
          td("Traffic", chart(r.points, (p) => p.rate, (p) => p.error_rate,
            "requests per second (solid) and 5xx per second (dashed) of " + r.route)),
          td("Latency", chart(r.points, (p) => p.p50, (p) => p.p99,
            "p50 (solid) and p99 (dashed) latency of " + r.route)));
      });
    });
    $("routes-dropped").textContent = data.routes_dropped > 0
      ? " " + data.routes_dropped + " more routes are not shown (the console keeps a bounded number)." : "";
  }

  function drawConsumers(data) {
    const cs = data.consumers || [];
    swap("consumers-body", [cs, data.consumers_error], () => {
      const rows = cs.map((c) => el("tr", { "data-consumer": c.service + " " + c.topic },
        td("Service", c.service),
        td("Topic", el("code", {}, c.topic)),
        num("Lag", c.pending), num("In flight", c.ack_pending), num("Redelivering", c.redelivering),
        num("Delivered", c.delivered), num("Redelivered", c.redelivered),
        num("Failures", c.failures), num("Dead-lettered", c.dead_lettered)));
      if (data.consumers_error) rows.unshift(emptyRow(9, "reading consumer lag failed at the last sample; lag figures may be missing"));
      if (rows.length === 0) return emptyRow(9, "no event consumer");
      return rows;
    });
  }

  function drawBreakers(svc) {
    let bs = [];
    let present = false;
    if (Array.isArray(svc.breakers)) { present = true; bs = bs.concat(svc.breakers); }
    for (const s of svc.services || []) {
      if (Array.isArray(s.breakers)) {
        present = true;
        bs = bs.concat(s.breakers.map((b) => Object.assign({ caller: s.name }, b)));
      }
    }
    $("breakers").hidden = !present;
    $("nav-breakers").hidden = !present;
    if (!present) return;
    swap("breakers-body", bs, () => {
      if (bs.length === 0) return emptyRow(8, "no call made yet");
      return bs.map((b) => {
        const c = b.counts || {};
        return el("tr", {},
          td("Caller", b.caller || "–"), td("Callee", b.callee || "–"),
          td("State", status(b.state)), td("Since", fmtTime(b.since)),
          num("Requests", c.requests), num("Failures", c.failures),
          num("Consecutive failures", c.consecutive_failures), num("Transitions", b.transitions));
      });
    });
  }

  function drawReloads(services, data, config) {
    const mods = {};
    for (const m of (data && data.modules) || []) mods[m.service] = m;
    const rows = services.map((s) => ({ s, m: mods[s.name] || {} }));
    const when = (r) => Math.max(Date.parse(r.s.loaded_at || 0) || 0, Date.parse(r.s.last_error_time || 0) || 0);
    rows.sort((a, b) => when(b) - when(a) || (a.s.name < b.s.name ? -1 : 1));
    swap("reloads-body", rows, () => {
      if (rows.length === 0) return emptyRow(6, "no service loaded");
      return rows.map(({ s, m }) => el("tr", { "data-service": s.name },
        td("Service", s.name),
        td("Loaded", fmtTime(s.loaded_at)),
        num("Loads", m.loads), num("Refused", m.failed), num("Reloads", m.reloads),
        td("Last error", s.last_error
          ? el("span", {}, el("span", { class: "error" }, "✕ " + s.last_error), " ", fmtTime(s.last_error_time))
          : "none")));
    });
    const cr = (data && data.config_reloads) || {};
    swap("config-status", [config, cr], () => {
      if (!config || !config.file) return "Configuration file: none (flags only).";
      const parts = [el("span", {}, "Configuration file "), el("code", {}, config.file),
        ": applied ", fmtTime(config.applied_at),
        "; reloads " + fmtCount(cr.ok || 0) + " applied, " + fmtCount(cr.failed || 0) + " refused."];
      if (config.error) parts.push(el("br"), el("span", { class: "error" }, "✕ last reload refused: " + config.error));
      return parts;
    });
  }

  function drawDeadLetters(services) {
    const subs = services.filter((s) => (s.subscriptions || []).length > 0).slice(0, MAX_DLQ_SERVICES);
    const key = subs.map((s) => [s.name, dlqState[s.name]]);
    swap("deadletters-body", key, () => {
      if (subs.length === 0) return el("p", { class: "empty" }, "no service subscribes to events");
      return subs.map((s) => {
        const st = dlqState[s.name];
        const box = el("div", { class: "dl", "data-dlq": s.name });
        if (!st) { box.append(el("h3", {}, s.name), el("p", { class: "empty" }, "loading…")); return box; }
        if (st.error) { box.append(el("h3", {}, s.name), el("p", { class: "error" }, "✕ " + st.error)); return box; }
        const n = st.letters.length;
        const head = el("h3", {}, s.name + ": " + n + (n === 1 ? " dead letter" : " dead letters"));
        if (n > 0) head.append(redriveButton(s.name, null, "Redrive all " + n));
        box.append(head);
        if (n === 0) return box;
        const rows = st.letters.slice(0, MAX_LETTERS).map((d) => el("tr", { "data-letter": d.id },
          td("Event", el("code", {}, d.id)), td("Type", el("code", { class: "nowrap" }, d.type)),
          td("Reason", el("span", { class: "error" }, d.reason || "–")),
          num("Attempts", d.attempts), td("Failed", fmtTime(d.failed_at)),
          td("", redriveButton(s.name, d.id, "Redrive"))));
        box.append(el("div", { class: "table" }, el("table", {},
          el("thead", {}, el("tr", {}, ["Event", "Type", "Reason", "Attempts", "Failed", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, rows))));
        if (n > MAX_LETTERS) box.append(el("p", { class: "hint" }, (n - MAX_LETTERS) + " more not listed (meshd events dlq list --service " + s.name + ")"));
        return box;
      });
    });
  }

  function redriveButton(service, id, text) {
    const b = el("button", { type: "button", "data-redrive": service, "data-id": id || null }, text);
    b.addEventListener("click", () => redrive(service, id, b));
    return b;
  }

  async function redrive(service, id, button) {
    const what = id ? "dead letter " + id + " of " + service : "every dead letter of " + service;
    if (!window.confirm("Redrive " + what + "?\nThe service handles the event again.")) return;
    button.disabled = true;
    const q = new URLSearchParams({ service });
    if (id) q.append("id", id);
    try {
      const r = await getJSON("/v1/events/dlq/redrive?" + q.toString(), { method: "POST" });
      const n = (r && r.redriven) || 0;
      $("redrive-result").textContent = "✓ redriven " + n + (n === 1 ? " event" : " events") + " of " + service + ".";
    } catch (e) {
      $("redrive-result").textContent = "✕ redrive of " + service + " failed: " + e.message;
    }
    await pollDeadLetters(lastServices);
  }

  let lastServices = [];
  async function pollDeadLetters(services) {
    const subs = services.filter((s) => (s.subscriptions || []).length > 0).slice(0, MAX_DLQ_SERVICES);
    const next = {};
    await Promise.all(subs.map(async (s) => {
      try {
        const letters = await getJSON("/v1/events/dlq?service=" + encodeURIComponent(s.name));
        next[s.name] = { letters: Array.isArray(letters) ? letters : [] };
      } catch (e) {
        next[s.name] = { error: e.message };
      }
    }));
    dlqState = next;
    drawDeadLetters(services);
  }

  function setLive(ok, text) {
    const live = $("live");
    live.className = ok ? "" : "lost";
    live.textContent = text;
  }

  async function poll() {
    tick++;
    const [svc, data, config] = await Promise.allSettled([
      getJSON("/v1/services"), getJSON("/v1/console"), getJSON("/v1/config")]);
    const problems = [];
    if (svc.status === "fulfilled" && svc.value) {
      lastServices = svc.value.services || [];
      drawServices(lastServices);
      drawBreakers(svc.value);
    } else problems.push("services: " + svc.reason.message);
    const d = data.status === "fulfilled" ? data.value : null;
    if (d) { drawRoutes(d); drawConsumers(d); } else problems.push("console data: " + data.reason.message);
    const c = config.status === "fulfilled" ? config.value : null; // absent on a listener without it
    if (svc.status === "fulfilled") drawReloads(lastServices, d, c);
    if (svc.status === "fulfilled" && (tick % DLQ_EVERY === 1 || !last["deadletters-body"])) {
      await pollDeadLetters(lastServices);
    }
    const notice = $("notice");
    if (problems.length > 0) {
      const auth = [svc, data].some((r) => r.status === "rejected" && r.reason.status === 401);
      notice.textContent = problems.join("; ") + (auth ? " — reload the page and sign in with the admin token as the password." : "");
      notice.hidden = false;
      setLive(false, "✕ not live: " + new Date().toLocaleTimeString());
    } else {
      notice.hidden = true;
      setLive(true, "● live, updated " + new Date().toLocaleTimeString() + (d && d.error ? " (metrics: " + d.error + ")" : ""));
    }
  }

  let running = false;
  async function loop() {
    timer = null;
    if (running) return;
    running = true;
    try { await poll(); } catch (e) { setLive(false, "✕ " + e.message); } finally { running = false; }
    if (!document.hidden && timer === null) timer = setTimeout(loop, POLL_MS);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null && !running) loop();
  });
  loop();
})();
