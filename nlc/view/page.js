// nlc view: the level-graph explorer. Plain JS and inline SVG; the data is the JSON in #nlc-data.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("nlc-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const NS = DATA.styles.node, ES = DATA.styles.edge;
  const state = { graph: 0, expanded: false, selected: null, hidden: new Set(), view: null, drawing: null };
  const $ = (id) => document.getElementById(id);

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function el(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function human(n) {
    n = Number(n || 0);
    const units = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];
    for (const [d, s] of units) if (Math.abs(n) >= d) { const v = n / d; return (v < 100 ? v.toPrecision(3) : v.toFixed(0)) + s; }
    return String(n);
  }
  function fmt(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }
  const G = () => DATA.graphs[state.graph];

  // ------------------------------------------------------------------ timeline (mirrors data.timeline)
  function timeline(rows, n) {
    const unit = rows.length && rows.every((r) => r.unit === "steps") ? "steps" : "tokens";
    const out = {};
    for (const r of rows) out[r.key] = { updates: [], resets: [] };
    for (const r of rows) {
      if (r.unit !== unit || !r.every) continue;
      const C = Number(r.every);
      for (let t = C; t <= n; t += C) out[r.key].updates.push(t);
    }
    for (const r of rows) for (const t of out[r.key].updates) for (const k of r.resets || []) out[k].resets.push(t);
    for (const k in out) out[k].resets = Array.from(new Set(out[k].resets)).sort((a, b) => a - b);
    return { unit, events: out };
  }

  // ------------------------------------------------------------------ header, tabs, legend
  function header() {
    const s = DATA.spec;
    $("title").innerHTML = esc(G().title) + `<span class="file">${esc(G().file || s.file)}</span>`;
    const tabs = $("tabs");
    tabs.innerHTML = "";
    if (DATA.graphs.length > 1) DATA.graphs.forEach((g, i) => {
      const b = document.createElement("button");
      b.textContent = (g.kind === "optimizer" ? "optimizer " : "model ") + g.title;
      b.className = i === state.graph ? "active" : "";
      b.dataset.graph = g.id;
      b.onclick = () => switchGraph(i);
      tabs.appendChild(b);
    });
    const hasExp = !!G().views.expanded;
    $("expand-wrap").style.display = hasExp ? "" : "none";
    $("expand").checked = state.expanded && hasExp;
  }

  function legend() {
    const L = $("legend");
    const d = state.drawing;
    const kinds = new Set(d.edges.map((e) => e.kind));
    const nkinds = new Set(d.nodes.map((n) => n.kind));
    let h = '<div class="title">flows (click to hide)</div>';
    for (const k of Object.keys(ES)) {
      if (!kinds.has(k)) continue;
      const s = ES[k];
      h += `<div class="item${state.hidden.has(k) ? " off" : ""}" data-kind="${k}"><svg width="30" height="10"><line x1="1" y1="5" x2="29" y2="5" stroke="${s.color}" stroke-width="${Math.min(2.6, s.width + 0.4)}" stroke-dasharray="${s.dash}"/></svg>${esc(s.desc)}</div>`;
    }
    h += '<div class="title">levels</div>';
    for (const k of Object.keys(NS)) {
      if (!nkinds.has(k) || k === "output") continue;
      const s = NS[k];
      h += `<div class="item" style="cursor:default"><svg width="18" height="12"><rect x="1" y="1" width="16" height="10" rx="3" fill="${s.fill}" stroke="${s.stroke}"/></svg>${esc(k === "input" ? "input / output" : s.desc)}</div>`;
    }
    L.innerHTML = h;
    L.querySelectorAll(".item[data-kind]").forEach((it) => it.onclick = () => {
      const k = it.dataset.kind;
      state.hidden.has(k) ? state.hidden.delete(k) : state.hidden.add(k);
      it.classList.toggle("off");
      document.querySelectorAll(`.edge[data-kind="${k}"]`).forEach((e) => e.classList.toggle("kind-off", state.hidden.has(k)));
    });
  }

  // ------------------------------------------------------------------ graph drawing
  function clip(n, tx, ty, pad) {
    // where the segment from the centre of box n towards (tx, ty) leaves the box
    const dx = tx - n.x, dy = ty - n.y, hw = n.w / 2 + pad, hh = n.h / 2 + pad;
    if (Math.abs(dx) < 1e-6 && Math.abs(dy) < 1e-6) return [n.x, n.y];
    const t = Math.min(Math.abs(dx) > 1e-6 ? hw / Math.abs(dx) : Infinity, Math.abs(dy) > 1e-6 ? hh / Math.abs(dy) : Infinity);
    return [n.x + dx * Math.min(t, 1), n.y + dy * Math.min(t, 1)];
  }

  function draw() {
    const g = G();
    const d = state.expanded && g.views.expanded ? g.views.expanded : g.views.collapsed;
    state.drawing = d;
    const svg = $("graph");
    svg.innerHTML = "";
    const defs = el("defs", {}, svg);
    for (const k in ES) {
      const m = el("marker", { id: "arrow-" + k, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" }, defs);
      m.setAttribute("markerWidth", "9"); m.setAttribute("markerHeight", "9");
      el("path", { d: "M0,1 L10,5 L0,9 z", fill: ES[k].color }, m);
    }
    const root = el("g", { id: "viewport" }, svg);
    const W = d.width, H = d.height;
    const byId = {};
    d.nodes.forEach((n) => byId[n.id] = n);
    // bands
    const gb = el("g", { class: "bands" }, root);
    d.bands.forEach((b, i) => {
      const io = b.key === "input" || b.key === "output";
      const bg = el("g", { class: "band", "data-band": b.key }, gb);
      el("rect", { x: 8, y: b.y - b.h / 2 + 3, width: W - 16, height: b.h - 6, rx: 4, fill: io ? "#ffffff" : (i % 2 ? "#f8fafc" : "#eef2f7") }, bg);
      const lines = String(b.label).split("\n");
      lines.forEach((ln, j) => {
        const t = el("text", { x: 22, y: b.y - 6 - (lines.length - 1 - j) * 15, class: "blabel" }, bg);
        t.textContent = ln;
      });
      const c = el("text", { x: 22, y: b.y + 12, class: "bcap" }, bg);
      c.textContent = b.caption;
    });
    if (d.bands.length > 1) {
      const ax = d.margin - 14;
      el("line", { x1: ax, y1: H - 22, x2: ax, y2: 26, stroke: "#94a3b8", "stroke-width": 1.2, "marker-end": "url(#arrow-axis)" }, gb);
      const m = el("marker", { id: "arrow-axis", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto" }, defs);
      el("path", { d: "M0,1 L10,5 L0,9 z", fill: "#94a3b8" }, m);
      const t = el("text", { x: ax - 6, y: H / 2, "text-anchor": "middle", transform: `rotate(-90 ${ax - 6} ${H / 2})`, fill: "#94a3b8", "font-size": 10.5 }, gb);
      t.textContent = "slower updates";
    }
    // edges (optimizer edges below the others)
    const order = { optimizes: 0, initializes: 1, backprop: 2, generates: 3, flow: 4 };
    const ge = el("g", { class: "edges" }, root);
    const loops = {}, labels = [];
    d.edges.slice().sort((a, b) => (order[a.kind] ?? 9) - (order[b.kind] ?? 9)).forEach((e) => {
      const s = ES[e.kind] || { color: "#6b7280", width: 1, dash: "" };
      const grp = el("g", { class: "edge" + (state.hidden.has(e.kind) ? " kind-off" : ""), "data-kind": e.kind, "data-source": e.source, "data-target": e.target, id: "edge-" + e.id }, ge);
      const faint = e.kind === "optimizes" || e.kind === "initializes";
      let pathD, lx, ly;
      if (e.source === e.target) {
        const n = byId[e.source];
        const i = loops[e.source] = (loops[e.source] || 0) + 1;
        const r = 26 + 12 * (i - 1);
        const xr = n.x + n.w / 2, yt = n.y - n.h / 2;
        pathD = `M${xr - 36},${yt} C${xr - 44},${yt - r * 1.4} ${xr + r},${yt - r} ${xr + 2},${n.y - 8}`;
        lx = xr + 4 + 0.3 * r; ly = yt - 0.8 * r;
      } else {
        const a = byId[e.source], b = byId[e.target];
        const [x1, y1] = clip(a, e.cx, e.cy, 2), [x2, y2] = clip(b, e.cx, e.cy, 3);
        pathD = `M${x1},${y1} Q${e.cx},${e.cy} ${x2},${y2}`;
        lx = 0.25 * e.x1 + 0.5 * e.cx + 0.25 * e.x2; ly = 0.25 * e.y1 + 0.5 * e.cy + 0.25 * e.y2;
      }
      el("path", { d: pathD, stroke: s.color, "stroke-width": s.width * 1.3, "stroke-dasharray": s.dash, opacity: faint ? 0.5 : 0.95, "marker-end": `url(#arrow-${e.kind})` }, grp);
      if (e.label) {
        const t = el("text", { x: lx, y: ly + 3, "text-anchor": "middle", class: "elabel", fill: s.color }, grp);
        t.textContent = e.label;
        labels.push({ t, e, loop: e.source === e.target, ends: e.source === e.target ? null : [clip(byId[e.source], e.cx, e.cy, 2), clip(byId[e.target], e.cx, e.cy, 3)] });
      }
      const tt = el("title", {}, grp);
      tt.textContent = `${e.source} → ${e.target}: ${e.kind}${e.label ? " (" + e.label + ")" : ""}`;
    });
    placeLabels(labels, d.nodes);
    // nodes
    const gn = el("g", { class: "nodes" }, root);
    d.nodes.forEach((n) => {
      const st = NS[n.kind] || NS.level;
      const grp = el("g", { class: "node", "data-id": n.id, "data-kind": n.kind, transform: `translate(${n.x - n.w / 2},${n.y - n.h / 2})` }, gn);
      if (n.key) grp.setAttribute("data-key", n.key);
      if (n.layer != null) grp.setAttribute("data-layer", n.layer);
      if (n.repeat > 1) for (const off of [10, 5]) el("rect", { x: off, y: -off, width: n.w, height: n.h, rx: 11, fill: st.fill, stroke: st.stroke, "stroke-width": 0.9 }, grp);
      el("rect", { class: "box", width: n.w, height: n.h, rx: 11, fill: st.fill, stroke: st.stroke }, grp);
      const name = el("text", { class: "name", x: n.w / 2, y: n.sub ? n.h / 2 - 3 : n.h / 2 + 5, "text-anchor": "middle" }, grp);
      name.textContent = n.label;
      if (n.sub) {
        const sb = el("text", { class: "sub", x: n.w / 2, y: n.h / 2 + 14, "text-anchor": "middle" }, grp);
        sb.textContent = n.sub;
      }
      if (n.repeat > 1) {
        const bd = el("g", { class: "badge", transform: `translate(${n.w - 8},${-16})` }, grp);
        el("rect", { width: 26, height: 15, rx: 7 }, bd);
        const bt = el("text", { x: 13, y: 11, "text-anchor": "middle" }, bd);
        bt.textContent = "×" + n.repeat;
        const ttl = el("title", {}, bd);
        ttl.textContent = "a repeated block: click to expand its layers";
        bd.addEventListener("click", (ev) => { ev.stopPropagation(); setExpanded(true); });
      }
      grp.addEventListener("mouseenter", () => hover(n.id, true));
      grp.addEventListener("mouseleave", () => hover(n.id, false));
      grp.addEventListener("click", (ev) => { ev.stopPropagation(); if (n.key) select(n.key, n.id); });
    });
    legend();
    fit();
    markSelected();
  }

  function placeLabels(labels, nodes) {
    // labels slide along their own curve until they overlap no earlier label and no box
    const placed = nodes.map((n) => ({ x: n.x - n.w / 2, y: n.y - n.h / 2, w: n.w, h: n.h }));
    // b is an SVGRect (x, y, width, height); placed boxes are {x, y, w, h}
    const hit = (b) => placed.some((p) => b.x < p.x + p.w && p.x < b.x + b.width && b.y < p.y + p.h && p.y < b.y + b.height);
    for (const L of labels) {
      let box = L.t.getBBox();
      if (!L.loop && hit(box)) {
        const [[x1, y1], [x2, y2]] = L.ends, e = L.e;
        for (const t of [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85]) {
          const x = (1 - t) * (1 - t) * x1 + 2 * (1 - t) * t * e.cx + t * t * x2;
          const y = (1 - t) * (1 - t) * y1 + 2 * (1 - t) * t * e.cy + t * t * y2;
          L.t.setAttribute("x", x.toFixed(1));
          L.t.setAttribute("y", (y + 3).toFixed(1));
          box = L.t.getBBox();
          if (!hit(box)) break;
        }
        // no free spot on the curve (short edges between neighbouring bands): step sideways
        const x0 = Number(L.t.getAttribute("x"));
        for (let i = 1; i <= 8 && hit(box); i++) {
          const dx = Math.ceil(i / 2) * (box.width / 2 + 6) * (i % 2 ? 1 : -1);
          L.t.setAttribute("x", (x0 + dx).toFixed(1));
          box = L.t.getBBox();
        }
      }
      placed.push({ x: box.x - 1, y: box.y - 1, w: box.width + 2, h: box.height + 2 });
    }
  }

  function hover(id, on) {
    const svg = $("graph");
    svg.classList.toggle("hovering", on);
    svg.querySelectorAll(".hl, .hl-node, .hl-self").forEach((x) => x.classList.remove("hl", "hl-node", "hl-self"));
    if (!on) return;
    svg.querySelectorAll(`.node[data-id="${CSS.escape(id)}"]`).forEach((x) => x.classList.add("hl-self"));
    svg.querySelectorAll(".edge").forEach((e) => {
      const s = e.dataset.source, t = e.dataset.target;
      if (s === id || t === id) {
        e.classList.add("hl");
        for (const o of [s, t]) svg.querySelectorAll(`.node[data-id="${CSS.escape(o)}"]`).forEach((x) => x.classList.add("hl-node"));
      }
    });
  }

  // ------------------------------------------------------------------ zoom and pan
  function setView(v) {
    state.view = v;
    $("graph").setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
  }
  function fit() {
    // the whole drawing (bands, and edges that bend outside them) fills the canvas
    const d = state.drawing, svg = $("graph");
    const r = svg.getBoundingClientRect();
    let bx = 0, by = 0, bw = d.width, bh = d.height;
    try {
      const b = $("viewport").getBBox();
      if (b.width > 0 && b.height > 0) { bx = b.x; by = b.y; bw = b.width; bh = b.height; }
    } catch (e) { /* not rendered yet: the drawing's own size */ }
    const pad = 14, W = bw + 2 * pad, H = bh + 2 * pad;
    const aspect = (r.width || 800) / (r.height || 600);
    let w = W, h = H;
    if (w / h < aspect) w = h * aspect; else h = w / aspect;
    setView({ x: bx - pad - (w - W) / 2, y: by - pad - (h - H) / 2, w, h });
  }
  function zoom(f, cx, cy) {
    const v = state.view;
    if (cx == null) { cx = v.x + v.w / 2; cy = v.y + v.h / 2; }
    const w = Math.min(Math.max(v.w * f, 80), 20000), k = w / v.w;
    setView({ x: cx - (cx - v.x) * k, y: cy - (cy - v.y) * k, w, h: v.h * k });
  }
  function toSvg(ev) {
    const r = $("graph").getBoundingClientRect(), v = state.view;
    return [v.x + (ev.clientX - r.left) / r.width * v.w, v.y + (ev.clientY - r.top) / r.height * v.h];
  }
  function panZoomHandlers() {
    const svg = $("graph");
    svg.addEventListener("wheel", (ev) => { ev.preventDefault(); const [x, y] = toSvg(ev); zoom(Math.exp(ev.deltaY * 0.0015), x, y); }, { passive: false });
    let drag = null;
    svg.addEventListener("mousedown", (ev) => { if (ev.button !== 0) return; drag = { x: ev.clientX, y: ev.clientY, v: state.view, moved: false }; svg.classList.add("panning"); });
    window.addEventListener("mousemove", (ev) => {
      if (!drag) return;
      const r = svg.getBoundingClientRect();
      const dx = (ev.clientX - drag.x) / r.width * drag.v.w, dy = (ev.clientY - drag.y) / r.height * drag.v.h;
      if (Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 3) drag.moved = true;
      setView({ x: drag.v.x - dx, y: drag.v.y - dy, w: drag.v.w, h: drag.v.h });
    });
    window.addEventListener("mouseup", () => { if (drag) svg.classList.remove("panning"); setTimeout(() => drag = null, 0); });
    svg.addEventListener("click", () => { if (!drag || !drag.moved) select(null); });
    $("zoom-in").onclick = () => zoom(1 / 1.25);
    $("zoom-out").onclick = () => zoom(1.25);
    $("zoom-fit").onclick = fit;
    window.addEventListener("keydown", (ev) => {
      if (ev.target && ev.target.tagName === "INPUT") return;
      if (ev.key === "Escape") select(null);
      else if (ev.key === "+" || ev.key === "=") zoom(1 / 1.25);
      else if (ev.key === "-") zoom(1.25);
      else if (ev.key === "0" || ev.key === "f") fit();
    });
  }

  // ------------------------------------------------------------------ panel
  function spanLoc(s) {
    return `${s.file}:${s.line}${s.end_line > s.line ? "–" + s.end_line : ""}`;
  }
  function levelChip(key) {
    const info = G().levels[key];
    return `<span class="chip link" data-goto="${esc(key)}">${esc(info ? info.label : key)}</span>`;
  }
  function eqHtml(eqs) {
    return eqs.map((e) => `<div class="eq"><div class="etitle">${esc(e.title)}</div>${e.mathml || ""}</div>`).join("");
  }
  function plot(title, series, opts) {
    // series: [{name, points: [[x, y], ...]}]; a small line plot as inline SVG
    const W = 420, Hh = 112, L = 52, R = 8, T = 8, B = 18;
    const all = series.flatMap((s) => s.points);
    if (!all.length) return "";
    let xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const log = ys.every((y) => y > 0) && Math.max(...ys) / Math.min(...ys) > 50;
    const fy = (y) => log ? Math.log10(y) : y;
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys.map(fy)), y1 = Math.max(...ys.map(fy));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += Math.abs(y1) * 0.05 + 1e-9; y0 -= Math.abs(y0) * 0.05 + 1e-9; }
    const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), Y = (y) => T + (1 - (fy(y) - y0) / (y1 - y0)) * (Hh - T - B);
    const colors = ["#1d4ed8", "#ea580c", "#15803d", "#7c3aed", "#dc2626", "#0d9488", "#a16207", "#db2777"];
    let h = `<div class="plot"><div class="ptitle">${esc(title)}${log ? ' <span class="muted">(log scale)</span>' : ""}</div><svg width="${W}" height="${Hh}" viewBox="0 0 ${W} ${Hh}">`;
    h += `<rect x="${L}" y="${T}" width="${W - L - R}" height="${Hh - T - B}" fill="#f8fafc" stroke="#e2e8f0"/>`;
    const yl = (v) => fmt(log ? Math.pow(10, v) : v);
    h += `<text x="${L - 4}" y="${T + 8}" text-anchor="end">${esc(yl(y1))}</text><text x="${L - 4}" y="${Hh - B}" text-anchor="end">${esc(yl(y0))}</text>`;
    h += `<text x="${L}" y="${Hh - 5}">${esc(fmt(x0))}</text><text x="${W - R}" y="${Hh - 5}" text-anchor="end">step ${esc(fmt(x1))}</text>`;
    series.forEach((s, i) => {
      const pts = s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
      h += `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5" points="${pts}"><title>${esc(s.name)}</title></polyline>`;
      if (s.points.length < 30) for (const p of s.points) h += `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="2.2" fill="${colors[i % colors.length]}"><title>${esc(s.name)}: step ${esc(p[0])}, ${esc(fmt(p[1]))}</title></circle>`;
    });
    h += "</svg>";
    if (series.length > 1) h += '<div class="chips">' + series.map((s, i) => `<span class="chip" style="border-color:${colors[i % colors.length]};color:${colors[i % colors.length]}">${esc(s.name)}</span>`).join("") + "</div>";
    return h + "</div>";
  }
  function sourceHtml(spans) {
    // each file the spans touch: the whole file, the spans' lines highlighted (def > ref > read)
    const files = [];
    for (const s of spans) if (s && !files.includes(s.file)) files.push(s.file);
    let h = "";
    const rank = { def: 3, ref: 2, read: 1 };
    for (const f of files) {
      const text = DATA.sources[f];
      const mine = spans.filter((s) => s && s.file === f);
      if (text == null) { h += `<div class="src"><div class="shead">${esc(f)} (source not available)</div></div>`; continue; }
      const cls = {};
      for (const s of mine) for (let l = s.line; l <= s.end_line; l++) if (!cls[l] || rank[s.role] > rank[cls[l]]) cls[l] = s.role;
      const defs = mine.filter((s) => s.role === "def");
      const head = defs.length ? defs.map((s) => "lines " + s.line + (s.end_line > s.line ? "–" + s.end_line : "")).join(", ") : "";
      const lines = text.split("\n");
      if (lines.length && lines[lines.length - 1] === "") lines.pop();
      h += `<div class="src" data-file="${esc(f)}"><div class="shead">${esc(f)}${head ? " · " + esc(head) : ""}</div><pre>`;
      lines.forEach((ln, i) => { const c = cls[i + 1]; h += `<span class="ln${c ? " " + c : ""}" data-line="${i + 1}"><span class="no">${i + 1}</span>${esc(ln)}</span>`; });
      h += "</pre></div>";
    }
    return h;
  }
  function flowsHtml(nodeId) {
    const d = state.drawing;
    const ids = new Set(d.nodes.filter((n) => n.id === nodeId || (n.key && n.key === nodeId)).map((n) => n.id));
    const label = (id) => { const n = d.nodes.find((x) => x.id === id); return n ? n.label : id; };
    const li = (e, other, dir) => {
      const s = ES[e.kind] || { color: "#666", dash: "" };
      const on = d.nodes.find((x) => x.id === other);
      const who = on && on.key ? levelChip(on.key) : `<span class="chip">${esc(label(other))}</span>`;
      return `<li><span class="swatch" style="border-color:${s.color};border-top-style:${s.dash ? "dashed" : "solid"}"></span>${dir} ${who} <span class="muted">${esc(e.kind)}${e.label ? ": " + esc(e.label) : ""}</span></li>`;
    };
    const inc = d.edges.filter((e) => ids.has(e.target)), out = d.edges.filter((e) => ids.has(e.source) && !ids.has(e.target));
    return `<ul class="flows">${inc.map((e) => li(e, e.source, "from")).join("")}${out.map((e) => li(e, e.target, "to")).join("")}</ul>`;
  }

  function summary() {
    const g = G(), s = DATA.spec;
    let h = `<h2>${esc(g.title)}</h2><div class="chips"><span class="chip">${esc(g.kind)}</span><span class="chip">${esc(g.file || s.file)}</span>`;
    if (g.kind === "model" && s.total_params) h += `<span class="chip">${esc(s.total_params.toLocaleString("en"))} parameters</span>`;
    h += "</div>";
    h += '<p class="muted">Click a level (or a name below) for its update rule, clock, parameters, initial state and source.</p>';
    h += "<h3>Levels (fastest first)</h3><div class=\"levels-list\">";
    const keys = Object.keys(g.levels).sort((a, b) => (g.levels[a].tier - g.levels[b].tier) || a.localeCompare(b));
    h += keys.map((k) => `<div data-goto="${esc(k)}">${esc(g.levels[k].label)} <span class="muted">${esc(g.levels[k].clock)}</span></div>`).join("");
    h += "</div>";
    if (g.kind === "optimizer") {
      h += `<h3>Step</h3>${g.step_eq}`;
      h += "<h3>Parameters</h3><div class=\"kv\">" + Object.entries(g.params).map(([k, v]) => `<span class="k">${esc(k)}</span><span>${esc(fmt(v))}</span>`).join("") + "</div>";
      if (g.step_span) h += "<h3>Source</h3>" + sourceHtml([g.step_span]);
    } else {
      const p = s.params || {};
      h += "<h3>Spec parameters</h3><div class=\"kv\">" + Object.entries(p).map(([k, v]) => `<span class="k">${esc(k)}</span><span>${esc(fmt(v))}${k in (s.overrides || {}) ? ' <span class="chip">--set</span>' : ""}</span>`).join("") + "</div>";
    }
    const run = DATA.run;
    if (run && g.kind === "model") {
      h += "<h3>Run</h3><div class=\"kv\">";
      h += `<span class="k">directory</span><span><code>${esc(run.dir)}</code></span>`;
      const rec = run.record || {};
      for (const k of ["spec_name", "model", "spec_path", "tokenizer"]) if (rec[k] != null) h += `<span class="k">${esc(k)}</span><span>${esc(rec[k])}</span>`;
      h += `<span class="k">overrides</span><span>${Object.keys(rec.overrides || {}).length ? Object.entries(rec.overrides).map(([k, v]) => `<code>--set ${esc(k)}=${esc(v)}</code>`).join(" ") : "none"}</span>`;
      h += `<span class="k">logged lines</span><span>${esc(run.rows)}</span></div>`;
      const c = run.curves || {};
      if (c.loss) h += plot("training loss (nats/byte)", [{ name: "loss", points: c.loss }].concat(c.val_loss ? [{ name: "val_loss", points: c.val_loss }] : []));
      if (c.bpb || c.val_bpb) h += plot("bits per byte", [].concat(c.bpb ? [{ name: "train bpb", points: c.bpb }] : [], c.val_bpb ? [{ name: "val bpb", points: c.val_bpb }] : []));
      if (c.tok_s) h += plot("tokens / s", [{ name: "tok/s", points: c.tok_s }]);
      if (!c.loss && !c.bpb) h += '<p class="muted">no training curves in metrics.jsonl</p>';
      const specFiles = Object.keys(DATA.sources);
      if (specFiles.length) h += "<h3>The run's spec</h3>" + sourceHtml(specFiles.map((f) => ({ file: f, line: 0, end_line: -1, role: "file" })));
    }
    return h;
  }

  function levelPanel(key, nodeId) {
    const g = G(), L = g.levels[key];
    const node = state.drawing.nodes.find((n) => n.id === nodeId);
    const layer = node && node.layer != null ? node.layer : null;
    let h = `<button class="close" title="close (Esc)">×</button><h2>${esc(layer != null ? node.label : L.label)}</h2>`;
    h += `<div class="chips"><span class="chip">${esc(L.role || L.kind)}</span><span class="chip">${esc(L.clock)}</span><span class="chip">tier ${esc(L.tier)}</span>`;
    if (L.rule_text) h += `<span class="chip wrap">rule ${esc(L.rule_text.replace(/^rule\s+/, ""))}</span>`;
    if (L.memory) h += `<span class="chip">${esc(L.memory)}</span>`;
    h += "</div>";
    h += `<section class="sec-rule"><h3>Update rule</h3>${eqHtml(L.equations)}`;
    if (L.optimizer_graph) {
      const gi = DATA.graphs.findIndex((x) => x.id === L.optimizer_graph);
      if (gi >= 0) h += `<p><span class="chip link" data-graph="${gi}">open the optimizer's own level graph →</span></p>`;
    }
    h += "</section>";
    if (L.bindings && L.bindings.length) {
      h += '<h3>Symbols, bound to this level</h3><table class="bind">';
      for (const b of L.bindings) {
        h += `<tr><td class="sym">${b.symbol}</td><td><div><span class="muted">${esc(b.role)}</span> = <code>${esc(b.text)}</code>${b.kind === "learned" ? ' <span class="chip">learned</span>' : ""}</div>`;
        if (b.note) h += `<div class="note">${esc(b.note)}</div>`;
        for (const d of b.defs || []) h += `<div class="def" data-file="${esc(d.file)}" data-line="${d.line}"><span class="loc">${esc(d.file)}:${d.line}</span> ${esc(d.text)}</div>`;
        if (b.levels && b.levels.length) h += `<div class="note">produced by ${b.levels.map(levelChip).join(" ")}</div>`;
        h += "</td></tr>";
      }
      h += "</table>";
    }
    if (L.memory_eq || L.objective_eq || L.objective_words) {
      h += "<h3>Objective</h3>";
      if (L.objective_words) h += `<div class="words">${esc(L.objective_words)}</div>`;
      if (L.objective_eq) h += `<div class="eq">${L.objective_eq}</div>`;
      if (L.memory_eq) h += `<div class="eq"><div class="etitle">the memory</div>${L.memory_eq}</div>`;
    }
    for (const n of L.notes || []) h += `<div class="words muted">${esc(n)}</div>`;
    h += `<section class="sec-clock"><h3>Clock</h3><div class="words"><code>${esc(L.clock)}</code>: ${esc(L.clock_words)}</div></section>`;
    h += '<h3>Parameters</h3><div class="kv">';
    if (L.role === "slot") h += `<span class="k">state</span><span>one entry per element of each parameter it optimizes (no parameters of its own)</span>`;
    else if (L.kind === "optimizer") h += `<span class="k">trains</span><span>${esc(human(L.params))} parameters (${esc(L.params.toLocaleString("en"))})</span>`;
    else {
      h += `<span class="k">per layer</span><span>${esc(L.params_per_layer.toLocaleString("en"))}</span>`;
      if (L.repeat > 1) h += `<span class="k">all ${L.repeat} layers</span><span>${esc(L.params.toLocaleString("en"))}</span>`;
      if (L.heads > 1) h += `<span class="k">heads</span><span>${esc(L.heads)}</span>`;
    }
    if (L.options) for (const [k, v] of Object.entries(L.options)) h += `<span class="k">${esc(k)}</span><span>${esc(fmt(v))}</span>`;
    h += "</div>";
    h += `<h3>Initial state</h3><div class="words">${esc(L.init.words)}</div>`;
    if (L.init.learned_by && L.init.learned_by.length) h += `<div class="words">learned by ${L.init.learned_by.map(levelChip).join(" ")}</div>`;
    if (L.stats) {
      h += "<h3>Logged statistics</h3>";
      for (const [stat, per] of Object.entries(L.stats)) {
        const sel = layer != null ? per.filter((p) => p.layer === layer) : per;
        h += plot(stat.replace(/_/g, " "), sel.map((p) => ({ name: p.layer == null ? stat : "layer " + p.layer, points: p.points })));
      }
    } else if (DATA.run && L.kind !== "optimizer") h += '<h3>Logged statistics</h3><p class="muted">none logged for this level</p>';
    h += `<h3>Flows</h3>${flowsHtml(nodeId || key)}`;
    h += `<section class="sec-source"><h3>Source</h3>${sourceHtml(L.spans || [])}</section>`;
    return h;
  }

  function wirePanel() {
    const P = $("panel");
    P.querySelectorAll("[data-goto]").forEach((x) => x.onclick = () => select(x.dataset.goto));
    P.querySelectorAll("[data-graph]").forEach((x) => x.onclick = () => switchGraph(Number(x.dataset.graph)));
    const c = P.querySelector(".close");
    if (c) c.onclick = () => select(null);
    P.querySelectorAll(".def[data-line]").forEach((x) => x.onclick = () => {
      const src = P.querySelector(`.src[data-file="${CSS.escape(x.dataset.file)}"]`);
      const ln = src && src.querySelector(`.ln[data-line="${x.dataset.line}"]`);
      if (ln) { scrollLine(src, ln); ln.classList.add("flash"); setTimeout(() => ln.classList.remove("flash"), 1200); }
    });
    // scroll each source box to its first highlighted line
    P.querySelectorAll(".src").forEach((src) => {
      const ln = src.querySelector(".ln.def") || src.querySelector(".ln.ref") || src.querySelector(".ln.read");
      if (ln) scrollLine(src, ln);
    });
  }
  function scrollLine(src, ln) {
    const pre = src.querySelector("pre");
    pre.scrollTop = Math.max(0, ln.offsetTop - pre.offsetTop - 40);
  }

  function select(key, nodeId) {
    const g = G();
    if (key && !g.levels[key]) key = null;
    state.selected = key ? { key, node: nodeId || null } : null;
    const P = $("panel");
    P.innerHTML = key ? levelPanel(key, nodeId || (state.drawing.nodes.find((n) => n.key === key) || {}).id) : summary();
    P.dataset.level = key || "";
    P.scrollTop = 0;
    wirePanel();
    markSelected();
    document.querySelectorAll("#tl-body .tl-row").forEach((r) => r.classList.toggle("sel", r.dataset.key === key));
  }
  function markSelected() {
    document.querySelectorAll(".node.selected").forEach((n) => n.classList.remove("selected"));
    if (!state.selected) return;
    const s = state.selected;
    document.querySelectorAll(".node").forEach((n) => {
      if (s.node ? n.dataset.id === s.node || (n.dataset.key === s.key && !document.querySelector(`.node[data-id="${CSS.escape(s.node)}"]`)) : n.dataset.key === s.key) n.classList.add("selected");
    });
  }

  // ------------------------------------------------------------------ timeline strip
  function drawTimeline() {
    const g = G();
    const n = Math.max(1, Math.min(8192, parseInt($("tl-n").value, 10) || g.default_n));
    const rows = g.timeline;
    const tl = timeline(rows, n);
    const unit = tl.unit === "steps" ? "steps" : "tokens";
    $("tl-n-label").textContent = unit === "steps" ? "optimizer steps N" : "sequence length N";
    $("tl-caption").textContent = unit === "steps"
      ? `which level updates at which of ${n} optimizer steps`
      : `which level updates after which of ${n} tokens (▮ update at the chunk's end, ✕ restart of a nested CMS stage)`;
    const body = $("tl-body");
    const width = Math.max(400, body.clientWidth - 4), LW = 190, RH = 19;
    const cw = (width - LW - 10) / n;
    const svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", rows.length * RH + 20);
    svg.id = "tl-svg";
    svg.dataset.n = n;
    rows.forEach((r, i) => {
      const y = i * RH;
      const info = g.levels[r.key] || {};
      const st = NS[info.kind] || NS.level;
      const grp = el("g", { class: "tl-row", "data-key": r.key, transform: `translate(0,${y})` }, svg);
      const ev = tl.events[r.key];
      grp.dataset.updates = ev.updates.length;
      grp.dataset.resets = ev.resets.length;
      el("rect", { class: "row-bg", x: 0, y: 1, width: width, height: RH - 2 }, grp);
      const lab = el("text", { class: "tl-label", x: 4, y: RH / 2 + 4 }, grp);
      lab.textContent = `${r.label}  ${info.clock || ""}`;
      lab.addEventListener("click", () => select(r.key));
      if (r.unit !== unit || !r.every) {
        const t = el("text", { class: "tl-note", x: LW, y: RH / 2 + 4 }, grp);
        t.textContent = r.unit === "frozen" || !r.every ? "never in context (frequency 0)"
          : (r.unit === "steps" ? `between sequences: every ${r.every} training step${r.every > 1 ? "s" : ""}` : "");
        return;
      }
      // chunk spans alternate shades; an update is a bar at the chunk's last token
      const C = Number(r.every);
      if (C > 1) for (let a = 0, j = 0; a < n; a += C, j++) el("rect", { x: LW + a * cw, y: 4, width: Math.min(C, n - a) * cw, height: RH - 8, fill: j % 2 ? st.fill : "#ffffff", stroke: "none", opacity: 0.9 }, grp);
      const bw = Math.max(1.2, Math.min(cw * 0.8, 6));
      for (const t of ev.updates) el("rect", { class: "tl-update", x: LW + t * cw - bw, y: 3, width: bw, height: RH - 6, fill: st.stroke }, grp);
      for (const t of ev.resets) {
        const x = LW + t * cw - bw / 2;
        const p = el("path", { class: "tl-reset", d: `M${x - 4},${5} L${x + 4},${RH - 5} M${x + 4},${5} L${x - 4},${RH - 5}`, stroke: "#dc2626", "stroke-width": 1.8 }, grp);
        const tt = el("title", {}, p); tt.textContent = `restarted at ${t}`;
      }
      const tt = el("title", {}, grp);
      tt.textContent = `${r.label}: ${ev.updates.length} update${ev.updates.length === 1 ? "" : "s"} in ${n} ${unit}` + (ev.resets.length ? `, ${ev.resets.length} restarts` : "");
    });
    // axis
    const ay = rows.length * RH + 12;
    const step = Math.pow(2, Math.max(0, Math.ceil(Math.log2(n / 16))));
    for (let t = 0; t <= n; t += step) {
      el("line", { x1: LW + t * cw, y1: ay - 10, x2: LW + t * cw, y2: ay - 6, stroke: "#94a3b8" }, svg);
      const tx = el("text", { class: "tl-axis", x: LW + t * cw, y: ay + 2, "text-anchor": "middle" }, svg);
      tx.textContent = t;
    }
    body.innerHTML = "";
    body.appendChild(svg);
    if (state.selected) document.querySelectorAll("#tl-body .tl-row").forEach((r) => r.classList.toggle("sel", r.dataset.key === state.selected.key));
  }

  // ------------------------------------------------------------------ wiring
  function setExpanded(on) {
    state.expanded = on && !!G().views.expanded;
    $("expand").checked = state.expanded;
    const sel = state.selected;
    draw();
    if (sel) select(sel.key);
  }
  function switchGraph(i) {
    state.graph = i;
    state.selected = null;
    $("tl-n").value = G().default_n;
    header();
    draw();
    select(null);
    drawTimeline();
    fit();
  }
  function init() {
    document.title = DATA.title;
    $("expand").addEventListener("change", (ev) => setExpanded(ev.target.checked));
    $("tl-n").addEventListener("input", drawTimeline);
    panZoomHandlers();
    window.addEventListener("resize", drawTimeline);
    switchGraph(0);
    if (window.ResizeObserver) {
      let last = null;
      new ResizeObserver(() => {
        const r = $("graph").getBoundingClientRect(), k = `${Math.round(r.width)}x${Math.round(r.height)}`;
        if (k !== last) { last = k; fit(); }
      }).observe($("graph"));
    }
    const m = location.hash.match(/^#level=(.+)$/);
    if (m) select(decodeURIComponent(m[1]));
    window.nlcView = { data: DATA, select, timeline, setExpanded, switchGraph, state };
  }
  init();
})();
