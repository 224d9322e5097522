"""The live topology page served at ``/``: one self-contained HTML document.

Everything is inline (CSS, JavaScript, SVG drawn by the script), so the page works on hosts with
no way out. It fetches ``/report`` every 1.5 s and redraws without reloading: every reachable
peer is a node on a circle (nickname, name, "us" marked), every connection an edge coloured by
its state (established, connected, i.e. TCP up but no UDP path, failed...). Up to 6 peers our
edges are labelled with their state, data path, MTU and the frame rate we send on them; beyond
12 the peer labels run along the radius, so 50 peers stay legible. A side panel lists our
connections with their reasons, the actors' health and the traffic rates. Text from the report
is only ever set as text (``textContent``), never as markup. Elements carry ``data-*``
attributes (peer names, states) so a browser test can find them.
"""

from __future__ import annotations

REFRESH_MS = 1500

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>weave topology</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { margin: 0; font: 13px/1.35 system-ui, sans-serif; color: #1d2530; background: #f6f7f9;
       display: flex; height: 100vh; }
#main { flex: 1; min-width: 0; display: flex; flex-direction: column; }
header { padding: 8px 14px; background: #1d2530; color: #fff; display: flex; gap: 18px;
         align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0; }
header .muted { color: #aab4c0; }
#stale { color: #ffb4a8; }
#graphbox { flex: 1; min-height: 0; overflow: auto; }
svg { display: block; width: 100%; height: 100%; }
aside { width: 380px; overflow: auto; padding: 10px 14px; background: #fff;
        border-left: 1px solid #d8dde3; }
aside h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: #5b6776;
           margin: 14px 0 4px; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 2px 4px; border-bottom: 1px solid #eef0f3;
         vertical-align: top; }
th { color: #5b6776; font-weight: 600; }
.edge { stroke-width: 2; }
.edge.us { stroke-width: 3.5; }
.established { stroke: #2e9d57; color: #2e9d57; }
.connected { stroke: #e0a100; color: #b07d00; stroke-dasharray: 6 4; }
.connecting, .retrying, .half { stroke: #8a96a3; color: #6c7885; stroke-dasharray: 2 4; }
.failed, .refused { stroke: #d23c2a; color: #d23c2a; stroke-dasharray: 8 3; }
.running { color: #2e9d57; } .restarting, .starting { color: #b07d00; }
.stopped { color: #6c7885; }
.node circle { fill: #fff; stroke: #4a5a6e; stroke-width: 2; }
.node.us circle { fill: #dcebff; stroke: #1f6fd1; stroke-width: 3; }
.node .nick { font-weight: 600; font-size: 12px; }
.node .name { font-size: 10px; fill: #5b6776; font-weight: 400; }
.elabel { font-size: 10px; fill: #39434f; paint-order: stroke; stroke: #f6f7f9;
          stroke-width: 3px; }
.legend span { margin-right: 10px; }
</style></head>
<body>
<div id="main">
<header><h1>weave</h1><span id="me" class="muted"></span><span id="rates"></span>
<span id="stale"></span></header>
<div id="graphbox"><svg id="graph" role="img" aria-label="weave topology"></svg></div>
</div>
<aside>
<div class="legend"><span class="established">&#9644; established</span>
<span class="connected">&#9644; TCP only (no UDP path)</span>
<span class="failed">&#9644; failed</span><span class="half">&#9644; other</span></div>
<h2>Our connections</h2>
<table id="conns"><thead><tr><th>peer</th><th>state</th><th>path</th><th>MTU</th>
<th>reason</th></tr></thead><tbody></tbody></table>
<h2>Actors</h2>
<table id="actors"><thead><tr><th>actor</th><th>state</th><th>restarts</th><th>last exit</th>
</tr></thead><tbody></tbody></table>
<h2>Router</h2><table id="router"><tbody></tbody></table>
</aside>
<script>
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const REFRESH_MS = __REFRESH_MS__;
let previous = null;  // {t, report}: for rates
let refreshes = 0;

function el(tag, attrs, text) {
  const e = ["svg", "g", "line", "circle", "text", "tspan", "title"].includes(tag)
    ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function rate(now, before, dt) {
  return before === undefined || dt <= 0 ? null : Math.max(0, (now - before) / dt);
}

function human(n, unit) {
  if (n === null) return "-";
  const k = ["", "k", "M", "G"];
  let i = 0;
  while (n >= 1000 && i < k.length - 1) { n /= 1000; i++; }
  return n.toFixed(n < 10 && i ? 1 : 0) + " " + k[i] + unit;
}

// One edge per pair of peers. Our own connections carry their state from our router; the
// others come from gossip: established when both ends say so, "half" when only one does.
function edges(report) {
  const me = report.router.peer.name;
  const known = new Set(report.peers.map(p => p.name));
  const byPair = new Map();
  const key = (a, b) => a < b ? a + " " + b : b + " " + a;
  for (const p of report.peers) {
    if (p.name === me) continue;
    for (const l of p.links) {
      if (l.peer === me || !known.has(l.peer)) continue;
      const k = key(p.name, l.peer);
      const e = byPair.get(k) || {a: p.name, b: l.peer, ends: 0, est: 0, us: false};
      e.ends += 1; if (l.established) e.est += 1;
      byPair.set(k, e);
    }
  }
  const out = [];
  for (const e of byPair.values()) {
    out.push({a: e.a, b: e.b, us: false, path: null,
              state: e.ends === 2 && e.est === 2 ? "established" : "half"});
  }
  const seen = new Set();
  for (const c of report.connections) {
    if (!c.peer || !known.has(c.peer) || seen.has(c.peer)) continue;
    seen.add(c.peer);
    out.push({a: me, b: c.peer, us: true, state: c.state, path: c.path, mtu: c.mtu,
              reason: c.reason});
  }
  return out;
}

const FEW = 12;  // up to this many peers: two-line labels; more: along the radius
const LABELLED = 6;  // up to this many peers our edges are labelled (else: the side panel)

// Where a node's label goes: beside it, away from the circle's centre.
function labelAt(a) {
  const c = Math.cos(a), s = Math.sin(a);
  const side = Math.abs(c) < 0.3 ? "middle" : c > 0 ? "start" : "end";
  if (s < -0.6) return {x: 26 * c, y: -34, anchor: side};
  if (s > 0.6) return {x: 26 * c, y: 30, anchor: side};
  return {x: c > 0 ? 18 : -18, y: -2, anchor: c > 0 ? "start" : "end"};
}

function draw(report, dt) {
  const svg = document.getElementById("graph");
  const label = p => p.nickname || p.name;
  const peers = report.peers.slice().sort((x, y) => x.us ? -1 : y.us ? 1 :
                                          label(x).localeCompare(label(y), "en", {numeric: true}));
  const n = peers.length;
  const few = n <= FEW;
  // Many peers: labels run outwards along the radius, so neighbours need only a line of
  // height each on the circle, not a label's width.
  const r = few ? Math.max(130, n * 19) : Math.max(150, n * 7.5);
  const size = 2 * r + (few ? 300 : 400);
  svg.setAttribute("viewBox", `${-size / 2} ${-size / 2} ${size} ${size}`);
  // never shrunk much below its natural size: scroll instead of unreadable text
  svg.style.minWidth = svg.style.minHeight = `${Math.round(size * 0.85)}px`;
  const pos = new Map();
  peers.forEach((p, i) => {
    const a = -Math.PI / 2 + 2 * Math.PI * i / Math.max(n, 1);
    pos.set(p.name, {x: n === 1 ? 0 : r * Math.cos(a), y: n === 1 ? 0 : r * Math.sin(a), a});
  });
  const paths = report.paths || {};
  const prevPaths = previous ? (previous.report.paths || {}) : {};
  const g = el("g");
  const labels = el("g");
  for (const e of edges(report)) {
    const p = pos.get(e.a), q = pos.get(e.b);
    if (!p || !q) continue;
    const line = el("line", {x1: p.x, y1: p.y, x2: q.x, y2: q.y,
                             class: `edge ${e.state}${e.us ? " us" : ""}`,
                             "data-a": e.a, "data-b": e.b, "data-state": e.state,
                             "data-path": e.path || "none"});
    line.appendChild(el("title", {}, `${e.a} - ${e.b}: ${e.state}` +
                        (e.reason ? ` (${e.reason})` : "")));
    g.appendChild(line);
    if (e.us && n <= LABELLED) {
      const peer = e.a === report.router.peer.name ? e.b : e.a;
      const tx = paths[peer] && prevPaths[peer]
        ? rate(paths[peer].tx_frames, prevPaths[peer].tx_frames, dt) : null;
      const bits = [e.state, e.path || "no path"];
      if (e.mtu) bits.push("MTU " + e.mtu);
      if (tx !== null) bits.push(human(tx, "frames/s"));
      // on the edge, 55 % of the way from us, on the side it leans to
      const [from, to] = e.a === peer ? [q, p] : [p, q];
      const mx = from.x + 0.55 * (to.x - from.x), my = from.y + 0.55 * (to.y - from.y);
      const lean = to.x - from.x;
      const anchor = Math.abs(lean) < 1 ? "middle" : lean < 0 ? "end" : "start";
      const dx = anchor === "end" ? -8 : anchor === "start" ? 8 : 0;
      labels.appendChild(el("text", {x: mx + dx,
                                     y: my + (anchor === "middle" ? -6 : 4),
                                     "text-anchor": anchor, class: "elabel",
                                     "data-edge-label": peer}, bits.join(" \u00b7 ")));
    }
  }
  for (const p of peers) {
    const {x, y, a} = pos.get(p.name);
    const node = el("g", {class: "node" + (p.us ? " us" : ""), "data-name": p.name,
                          "data-nickname": p.nickname || "", "data-us": p.us ? "1" : "0",
                          transform: `translate(${x},${y})`});
    node.appendChild(el("circle", {r: p.us ? 13 : 10}));
    const nick = (p.nickname || "?") + (p.us ? " (us)" : "");
    if (n === 1) {
      node.appendChild(el("text", {y: 32, "text-anchor": "middle", class: "nick"}, nick));
      node.appendChild(el("text", {y: 46, "text-anchor": "middle", class: "name"}, p.name));
    } else if (few) {
      const at = labelAt(a);
      node.appendChild(el("text", {x: at.x, y: at.y, "text-anchor": at.anchor, class: "nick"},
                          nick));
      node.appendChild(el("text", {x: at.x, y: at.y + 13, "text-anchor": at.anchor,
                                   class: "name"}, p.name));
    } else {
      const deg = a * 180 / Math.PI, left = Math.cos(a) < 0;
      const t = el("text", {x: left ? -18 : 18, y: 4, "text-anchor": left ? "end" : "start",
                            transform: `rotate(${left ? deg + 180 : deg})`, class: "nick"});
      t.appendChild(el("tspan", {}, nick + " "));
      t.appendChild(el("tspan", {class: "name"}, p.name));
      node.appendChild(t);
    }
    node.appendChild(el("title", {}, `${p.nickname} ${p.name}` + (p.us ? " (this router)" : "")));
    g.appendChild(node);
  }
  g.appendChild(labels);  // edge labels above the lines
  svg.replaceChildren(g);
}

function rows(id, list) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...list.map(([cells, attrs]) => {
    const tr = el("tr", attrs || {});
    for (const [text, cls] of cells) tr.appendChild(el("td", cls ? {class: cls} : {}, text));
    return tr;
  }));
}

function panel(report, dt) {
  const me = report.router.peer;
  document.getElementById("me").textContent =
    `${me.nickname} ${me.name} - ${report.peers.length} peers - version ${report.version}`;
  const fw = report.counters.forwarder || {};
  const pfw = previous ? previous.report.counters.forwarder || {} : {};
  // with encryption the crypto actor sends the sealed datagrams
  const sent = r => ((r.counters.forwarder || {}).tx_bytes || 0) +
    ((r.counters.crypto || {}).tx_bytes || 0);
  const bits = (now, before) => {
    const b = rate(now, before, dt);
    return b === null ? null : b * 8;
  };
  document.getElementById("rates").textContent =
    `sleeve in ${human(bits(fw.rx_bytes, pfw.rx_bytes), "bit/s")}, ` +
    `out ${human(bits(sent(report), previous ? sent(previous.report) : undefined),
                  "bit/s")}`;
  rows("conns", report.connections.map(c => [[
    [(c.nickname || "") + " " + (c.peer || c.address)], [c.state, c.state], [c.path || "-"],
    [c.mtu || "-"], [c.reason || ""]], {"data-peer": c.peer || "", "data-state": c.state}]));
  rows("actors", report.actors.map(a => [[[a.name], [a.state, a.state], [a.restarts],
    [a.last_exit || ""]], {"data-actor": a.name, "data-state": a.state}]));
  rows("router", [[[["range"], [report.router.range || "not set"]]],
                  [[["encryption"], [report.router.encryption ? "on" : "off"]]],
                  [[["MACs learned"], [report.macs]]],
                  [[["containers"], [report.attachments.length]]]]);
}

async function refresh() {
  try {
    const res = await fetch("/report", {cache: "no-store"});
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    const report = await res.json();
    const t = performance.now() / 1000;
    const dt = previous ? t - previous.t : 0;
    draw(report, dt);
    panel(report, dt);
    previous = {t, report};
    refreshes += 1;
    document.body.dataset.refreshes = refreshes;
    document.getElementById("stale").textContent = "";
  } catch (err) {
    document.getElementById("stale").textContent = "not updating: " + err.message;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
</script>
</body></html>
""".replace("__REFRESH_MS__", str(REFRESH_MS))
