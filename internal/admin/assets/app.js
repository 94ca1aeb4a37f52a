// wssproxy's dashboard: keeps the server-rendered page live. It polls
// /dashboard.json (only the chart points it has not seen) and /tunnels,
// redraws the charts (inline SVG) and the tables, and turns the filter
// form and the close buttons into requests that do not reload the page.
// Without this script the page is the same tables, refreshed every 10 s.
"use strict";

(() => {
  const body = document.body;
  const pollMS = Number(body.dataset.pollMs) || 2000;
  const spanMS = Number(body.dataset.spanMs) || 3600000;
  const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  let points = [];
  let last = 0;
  let query = new URLSearchParams(location.search);
  if (!query.get("sort")) query.set("sort", "id");

  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  const row = (cells) => {
    const tr = el("tr");
    for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
    return tr;
  };
  const dur = (s) => {
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 60) return s.toFixed(1) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + Math.round(s % 60) + "s";
    return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  };
  const num = (v) => v >= 1e9 ? (v / 1e9).toFixed(1) + "G" : v >= 1e6 ? (v / 1e6).toFixed(1) + "M" :
    v >= 1e3 ? (v / 1e3).toFixed(1) + "k" : (Math.round(v * 10) / 10).toString();

  // timeWindow is the time the charts show: the last hour, or since the
  // oldest point when there is less (at least two minutes).
  function timeWindow() {
    const now = Date.now();
    const oldest = points.length ? points[0].t : now;
    return [Math.max(now - spanMS, Math.min(oldest, now - 120000)), now];
  }

  // chart draws series ([{name, values: [[t, v], ...]}]) over timeWindow().
  function chart(id, series) {
    const svg = document.getElementById(id);
    const legend = svg.nextElementSibling;
    const [from, now] = timeWindow();
    const width = now - from;
    let top = 0;
    for (const s of series) for (const [, v] of s.values) top = Math.max(top, v);
    top = top > 0 ? top * 1.1 : 1;
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    legend.replaceChildren();
    let drawn = 0;
    series.forEach((s, i) => {
      const color = colors[i % colors.length];
      const pts = s.values.filter(([t]) => t >= from)
        .map(([t, v]) => ((t - from) / width * 600).toFixed(1) + "," + (138 - v / top * 130).toFixed(1));
      if (pts.length === 0) return;
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("stroke", color);
      line.setAttribute("class", "series");
      svg.append(line);
      drawn += pts.length;
      const latest = s.values.length ? s.values[s.values.length - 1][1] : 0;
      const key = el("span", s.name + " " + num(latest));
      key.style.borderColor = color;
      legend.append(key);
    });
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4");
    label.setAttribute("y", "12");
    label.textContent = "max " + num(top / 1.1);
    svg.append(label);
    const span = document.createElementNS(ns, "text");
    span.setAttribute("x", "596");
    span.setAttribute("y", "12");
    span.setAttribute("text-anchor", "end");
    span.textContent = "last " + dur(width / 1000);
    svg.append(span);
    svg.dataset.points = String(drawn);
  }

  function byRoute(index) {
    const names = new Set();
    for (const p of points) for (const n of Object.keys(p.routes || {})) names.add(n);
    return [...names].sort().map((n) => ({
      name: n,
      values: points.map((p) => {
        const r = (p.routes || {})[n];
        return [p.t, r ? r[index] + r[index + 1] : 0];
      }),
    }));
  }

  function drawCharts() {
    chart("chart-open", [{name: "open", values: points.map((p) => [p.t, p.open])}]);
    chart("chart-handshakes", [
      {name: "handshakes/s", values: points.map((p) => [p.t, p.handshakes])},
      {name: "refusals/s", values: points.map((p) => [p.t, p.refusals])},
    ]);
    chart("chart-messages", byRoute(0));
    chart("chart-bytes", byRoute(2));
  }

  function renderOverview(ov) {
    document.getElementById("open-count").textContent = ov.open;
    const routes = document.getElementById("routes");
    routes.replaceChildren(...ov.routes.map((r) => {
      const td = el("td");
      for (const b of r.backends) {
        td.append(el("span", `${b.name} ${b.up ? "up" : "down"} (${b.open} open)`, b.up ? "up" : "down"));
        td.append(" ", b.last_check
          ? el("small", `checked ${dur((Date.parse(ov.now) - Date.parse(b.last_check)) / 1000)} ago in ${b.latency_ms} ms${b.check_error ? ": " + b.check_error : ""}`)
          : el("small", "no active check"));
        td.append(el("br"));
      }
      return row([r.name, r.host, r.open, td]);
    }));
    const certs = document.getElementById("certs");
    const when = (t) => t ? t.slice(0, 19).replace("T", " ") : "";
    if (ov.certificates.length) {
      certs.replaceChildren(...ov.certificates.map((c) => {
        const cells = [c.names.join(" ")];
        if (c.not_after) {
          const fp = el("td");
          fp.append(el("code", c.sha256));
          cells.push(when(c.not_after).slice(0, 16), el("td", c.days_left, c.days_left < 14 ? "down" : ""), fp);
        } else {
          const none = el("td", "none yet");
          none.colSpan = 3;
          cells.push(none);
        }
        if (c.acme) {
          cells.push(when(c.next_renewal), c.renewal_errors,
            el("td", c.last_error ? `${when(c.last_error_at)}: ${c.last_error}` : "", c.last_error ? "down" : ""));
        } else {
          const blank = el("td");
          blank.colSpan = 3;
          cells.push(blank);
        }
        return row(cells);
      }));
    }
  }

  function renderTunnels(page) {
    const now = Date.now();
    const rows = document.getElementById("tunnel-rows");
    rows.replaceChildren(...page.tunnels.map((t) => {
      let lastMsg = Date.parse(t.opened);
      for (const d of [t.in, t.out]) if (d.last_message) lastMsg = Math.max(lastMsg, Date.parse(d.last_message));
      const form = el("form");
      form.method = "post";
      form.action = `/tunnels/${t.id}/close`;
      form.append(el("button", "close", "close"));
      const act = el("td");
      act.append(form);
      const tr = row([t.id, t.route, `${t.client_ip}:${t.client_port}`, t.backend, t.protocol, t.io,
        dur(t.age_seconds), dur(Math.max(0, now - lastMsg) / 1000), t.in.messages, t.in.bytes,
        t.out.messages, t.out.bytes, dur(t.throttled_seconds), act]);
      tr.dataset.id = t.id;
      return tr;
    }));
    document.getElementById("tunnel-count").textContent = `${page.tunnels.length} of ${page.total} shown`;
  }

  async function getJSON(url) {
    const resp = await fetch(url, {cache: "no-store"});
    if (!resp.ok) throw new Error(`${url}: ${resp.status} ${(await resp.text()).trim()}`);
    return resp.json();
  }

  async function refreshTunnels() {
    renderTunnels(await getJSON("/tunnels?" + query.toString()));
  }

  async function poll() {
    try {
      const ov = await getJSON("/dashboard.json?since=" + last);
      if (ov.points.length) {
        points = points.concat(ov.points).filter((p) => p.t >= Date.now() - spanMS);
        last = ov.points[ov.points.length - 1].t;
      }
      renderOverview(ov);
      drawCharts();
      await refreshTunnels();
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (err) {
      document.getElementById("updated").textContent = String(err.message || err);
    }
    setTimeout(poll, pollMS);
  }

  document.getElementById("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    query = new URLSearchParams();
    for (const [k, v] of new FormData(ev.target)) if (v) query.set(k, v);
    if (!query.get("sort")) query.set("sort", "id");
    history.replaceState(null, "", "/?" + query.toString());
    refreshTunnels().catch((err) => { document.getElementById("updated").textContent = String(err.message || err); });
  });

  // Column headers order the table: once ascending, again descending.
  for (const th of document.querySelectorAll("#tunnels th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      query.set("sort", query.get("sort") === key ? "-" + key : key);
      const select = document.querySelector("#filters select[name=sort]");
      if ([...select.options].some((o) => o.value === query.get("sort"))) select.value = query.get("sort");
      refreshTunnels();
    });
  }

  // Close buttons post without leaving the page (same origin: accepted).
  document.getElementById("tunnel-rows").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    form.querySelector("button").disabled = true;
    const resp = await fetch(form.action, {method: "POST"});
    if (!resp.ok) document.getElementById("updated").textContent = `close: ${resp.status} ${(await resp.text()).trim()}`;
    await refreshTunnels();
  });

  for (const e of document.querySelectorAll(".nojs")) e.hidden = true;
  for (const e of document.querySelectorAll(".live")) e.hidden = false;
  document.getElementById("charts").hidden = false;
  poll();
})();
