// servegraph live graph page: draws the graph from /graph, polls /live, /graph and /experiments,
// and sends operator actions with the control token the user types in (kept in this tab only).
"use strict";

const BASE = location.pathname.replace(/\/ui\/?$/, "");
const TOKEN_KEY = "servegraph-control-token:" + BASE;
const NODE_W = 224;
const NODE_H = 96;
const GAP_X = 28;
const GAP_Y = 58;
const PAD = 16;
const SVG_NS = "http://www.w3.org/2000/svg";
// Control actions without a body and the policies that take them (routing.state.ACTIONS).
const ACTIONS = { pause: ["canary"], resume: ["canary"], promote: ["canary"], rollback: ["canary", "blue_green"], reset: null };

const state = { spec: null, live: null, experiments: null, layout: null, selected: null, updates: 0 };
const $ = (id) => document.getElementById(id);

// ---- layout: layers by longest path from the ingress, ordered by the parents' positions ------

function layout(names, edges) {
  const children = new Map(names.map((n) => [n, []]));
  const parents = new Map(names.map((n) => [n, []]));
  for (const e of edges) {
    if (!children.has(e.from) || !children.has(e.to)) continue;
    children.get(e.from).push(e.to);
    parents.get(e.to).push(e.from);
  }
  const indegree = new Map(names.map((n) => [n, parents.get(n).length]));
  const queue = names.filter((n) => indegree.get(n) === 0);
  const layer = new Map(names.map((n) => [n, 0]));
  const seen = new Set();
  while (queue.length) {
    const n = queue.shift();
    seen.add(n);
    for (const c of children.get(n)) {
      layer.set(c, Math.max(layer.get(c), layer.get(n) + 1));
      indegree.set(c, indegree.get(c) - 1);
      if (indegree.get(c) === 0) queue.push(c);
    }
  }
  const rows = [];
  for (const n of names) {
    const l = seen.has(n) ? layer.get(n) : 0; // a cycle cannot pass validation; draw it anyway
    (rows[l] = rows[l] || []).push(n);
  }
  const order = new Map();
  rows.forEach((row, l) => {
    if (l > 0) {
      const centre = (n) => {
        const ps = parents.get(n).filter((p) => order.has(p));
        return ps.length ? ps.reduce((s, p) => s + order.get(p), 0) / ps.length : 0;
      };
      row.sort((a, b) => centre(a) - centre(b));
    }
    row.forEach((n, i) => order.set(n, i - (row.length - 1) / 2));
  });
  const widest = Math.max(...rows.map((r) => r.length));
  const width = 2 * PAD + widest * NODE_W + (widest - 1) * GAP_X;
  const pos = {};
  rows.forEach((row, l) => {
    const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
    const left = (width - rowWidth) / 2;
    row.forEach((n, i) => {
      pos[n] = { x: left + i * (NODE_W + GAP_X), y: PAD + l * (NODE_H + GAP_Y), layer: l };
    });
  });
  const height = 2 * PAD + rows.length * NODE_H + (rows.length - 1) * GAP_Y;
  return { pos, width, height, w: NODE_W, h: NODE_H };
}
window.servegraphLayout = layout; // for tests: positions of any graph

// ---- formatting ------------------------------------------------------------------------------

function num(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toFixed(digits);
}
function pct(x) {
  return x === null || x === undefined ? "–" : Math.round(100 * x) + " %";
}
function el(tag, attrs = {}, ...kids) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "text") node.textContent = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid) node.append(kid);
  return node;
}

// ---- the graph -------------------------------------------------------------------------------

function routerLine(node) {
  const s = node.state || {};
  if (s.canary) return `canary ${s.canary.status} · step ${s.canary.stage} · ${num(s.canary.candidate_percent, 0)} %`;
  if (s.bandit) return `bandit ${s.policy}`;
  if (s.blue_green) return `blue/green → ${s.blue_green.active || s.blue_green.live || ""}`;
  if (s.weights) return `${s.policy} ${s.weights.map((w) => Math.round(100 * w)).join(" / ")}${s.paused ? " (paused)" : ""}`;
  return s.policy || "router";
}

function openBreakers(node) {
  const found = [];
  const scan = (obj) => {
    for (const [name, b] of Object.entries((obj && obj.breakers) || {})) {
      if (b && b.state && b.state !== "closed") found.push(`${name}: ${b.state}`);
    }
  };
  scan(node.state);
  scan(node.resilience);
  return found;
}

function drawGraph() {
  const spec = state.spec;
  const svg = $("dag");
  const names = ["ingress", ...spec.nodes.map((n) => n.name)];
  const key = JSON.stringify([names, spec.edges]);
  if (!state.layout || state.layout.key !== key) state.layout = { key, ...layout(names, spec.edges) };
  const L = state.layout;
  const zoom = $("zoom").value;
  const scale = zoom === "fit" ? Math.min(1, ($("graph-pane").clientWidth - 8) / L.width) : Number(zoom);
  svg.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
  svg.setAttribute("width", Math.round(L.width * scale));
  svg.setAttribute("height", Math.round(L.height * scale));
  const live = (state.live && state.live.nodes) || {};
  const byName = new Map(spec.nodes.map((n) => [n.name, n]));
  const parts = [
    el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))),
  ];
  for (const e of spec.edges) {
    const a = L.pos[e.from], b = L.pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + L.w / 2, y1 = a.y + L.h, x2 = b.x + L.w / 2, y2 = b.y;
    const my = (y1 + y2) / 2;
    parts.push(el("svg:path", { d: `M ${x1} ${y1} C ${x1} ${my}, ${x2} ${my}, ${x2} ${y2}`, class: `edge edge-${e.kind}`, "marker-end": "url(#arrow)" }));
    const router = byName.get(e.from);
    if (e.kind === "arm" && router && router.state && router.state.weights) {
      const i = (router.state.arms || []).findIndex((arm) => arm === e.to || String(arm).startsWith(e.to));
      if (i >= 0) parts.push(el("svg:text", { x: (x1 + x2) / 2 + 4, y: my - 4, class: "edge-label", text: pct(router.state.weights[i]) }));
    }
    if (e.kind === "shadow") parts.push(el("svg:text", { x: (x1 + x2) / 2 + 4, y: my - 4, class: "edge-label", text: "shadow" }));
  }
  const bottleneck = state.live && state.live.bottleneck;
  for (const name of names) {
    const p = L.pos[name];
    const node = byName.get(name) || { name, kind: "ingress", deployment: "ingress" };
    const f = live[name] || {};
    const lines = [];
    if (name === "ingress") {
      const dep = (state.live && state.live.ingress) || {};
      lines.push(`HTTP ingress · ${dep.running ?? "?"} repl.`);
      const adm = (state.live && state.live.admission) || {};
      if (adm.in_flight !== undefined) lines.push(`in flight ${adm.in_flight}`);
      const drift = spec.observe && spec.observe.drift; // observe.drift of /graph (graph-level)
      if (drift && drift.state) lines.push(`drift: ${drift.flagged ? "FLAGGED" : drift.state === "comparing" ? "ok" : drift.state}`);
    } else {
      const own = node.deployment === name;
      lines.push(own ? `own deployment · ${f.replicas ?? "?"} repl.` : `fused in ${node.deployment} · ${f.replicas ?? "?"} repl.`);
      if (f.error) lines.push(`no figures: ${f.error}`.slice(0, 34));
      else lines.push(`${num(f.rps)} rps · ${num(f.errors_per_s)} err/s`, `p50 ${num(f.p50_ms)} · p95 ${num(f.p95_ms)} ms`);
      if (node.kind === "router") lines.push(routerLine(node));
      else if (node.drift) lines.push(`drift: ${node.drift.drifted || node.drift.flag ? "FLAGGED" : "ok"}`);
    }
    const breakers = openBreakers(node);
    const classes = ["node", `kind-${node.kind}`];
    if (name === bottleneck) classes.push("bottleneck");
    if (breakers.length) classes.push("breaker-open");
    if (name === state.selected) classes.push("selected");
    const g = el("svg:g", { class: classes.join(" "), transform: `translate(${p.x},${p.y})`, "data-node": name, onclick: () => select(name) });
    g.append(el("svg:rect", { width: L.w, height: L.h, rx: 8 }));
    g.append(el("svg:text", { x: 10, y: 20, class: "title", text: name }));
    g.append(el("svg:text", { x: L.w - 10, y: 20, class: "kind", "text-anchor": "end", text: name === bottleneck ? "bottleneck" : node.kind }));
    lines.slice(0, 4).forEach((line, i) => g.append(el("svg:text", { x: 10, y: 38 + i * 15, class: "figure", "data-line": i, text: line })));
    if (breakers.length) g.append(el("svg:title", { text: "breakers: " + breakers.join(", ") }));
    parts.push(g);
  }
  svg.replaceChildren(...parts);
}

// ---- side panel ------------------------------------------------------------------------------

function armRows(name, s) {
  const report = (state.experiments && state.experiments.routers && state.experiments.routers[name]) || {};
  const arms = report.arms || {};
  const total = Object.values(s.requests || {}).reduce((a, b) => a + b, 0);
  return (s.arms || []).map((arm, i) => {
    const a = arms[arm] || {};
    const r = a.reward || {};
    const ci = r.ci95 ? ` [${num(r.ci95[0], 2)}, ${num(r.ci95[1], 2)}]` : "";
    const vs = a.vs_control && a.vs_control.p_value !== null ? ` p=${num(a.vs_control.p_value, 3)}` : "";
    const requests = (s.requests || {})[arm] || 0;
    return el("tr", { "data-arm": arm },
      el("td", { text: arm }),
      el("td", { class: "weight", text: s.weights ? pct(s.weights[i]) : "–" }),
      el("td", { class: "share", text: total ? pct(requests / total) : "–" }),
      el("td", { class: "requests", text: String(requests) }),
      el("td", { text: String(a.errors ?? "–") }),
      el("td", { text: `${num(a.p50_ms)} / ${num(a.p95_ms)}` }),
      el("td", { text: r.mean === null || r.mean === undefined ? "–" : num(r.mean, 3) + ci + vs }));
  });
}

function routerCard(node) {
  const s = node.state || {};
  const card = el("div", { class: "router", "data-router": node.name });
  card.append(el("h2", { text: `Router ${node.name}` }), el("p", { class: "muted policy", text: routerLine(node) }));
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...["arm", "weight", "share", "requests", "errors", "p50 / p95 ms", "reward [95 % CI]"].map((h) => el("th", { text: h })))));
  table.append(el("tbody", {}, ...armRows(node.name, s)));
  card.append(table);
  if (s.canary) {
    const history = (s.canary.history || []).slice(-5).map((e) => el("li", { text: `${new Date(1000 * e.at).toLocaleTimeString()} ${e.action}${e.automatic ? "" : " (operator)"}: ${e.reason || ""}` }));
    card.append(el("p", { class: "canary", text: `canary: ${s.canary.status}, step ${s.canary.stage} of ${(s.canary.steps || []).length}, candidate ${num(s.canary.candidate_percent, 0)} %` }), el("ul", { class: "history" }, ...history));
  }
  if (s.bandit) card.append(el("details", {}, el("summary", { text: "bandit posterior" }), el("pre", { text: JSON.stringify(s.bandit, null, 1) })));
  if (s.shadow) card.append(el("p", { class: "shadow", text: `shadow agreement ${pct(s.shadow.agreement_rate)} · mean |diff| ${num(s.shadow.mean_abs_diff, 4)}` }));
  const breakers = openBreakers(node);
  if (breakers.length) card.append(el("p", { class: "error", text: "breakers: " + breakers.join(", ") }));
  const controls = el("div", { class: "controls" });
  const takes = (policies) => !policies || policies.includes(s.policy);
  for (const [action, policies] of Object.entries(ACTIONS)) if (takes(policies)) controls.append(el("button", { type: "button", "data-action": action, onclick: () => act(node.name, action, {}) , text: action }));
  if (s.weights && !s.canary) {
    const inputs = (s.arms || []).map((arm, i) => el("input", { type: "number", min: "0", max: "1", step: "0.05", value: String(s.weights[i]), "aria-label": `weight of ${arm}`, "data-weight": arm }));
    controls.append(el("span", { class: "weights" }, ...inputs), el("button", { type: "button", "data-action": "weights", onclick: () => act(node.name, "weights", { weights: inputs.map((x) => Number(x.value)) }), text: "set weights" }));
  }
  if (s.blue_green) {
    for (const arm of s.arms || []) controls.append(el("button", { type: "button", "data-action": "switch", onclick: () => act(node.name, "switch", { to: arm }), text: `switch to ${arm}` }));
  }
  card.append(controls);
  return card;
}

function drawSide() {
  const spec = state.spec;
  // Not while the user types a weight (a redraw would undo the edit).
  const active = document.activeElement;
  const editing = active && active.matches && active.matches("#routers input");
  if (!editing) $("routers").replaceChildren(...spec.nodes.filter((n) => n.kind === "router").map(routerCard));
  const live = (state.live && state.live.nodes) || {};
  const rows = spec.nodes.map((n) => [n, live[n.name] || {}]).sort((a, b) => (b[1].busy || 0) - (a[1].busy || 0));
  $("nodes-table").tBodies[0].replaceChildren(...rows.map(([n, f]) => el("tr", { "data-node": n.name, onclick: () => select(n.name) },
    el("td", { text: n.name }), el("td", { text: n.deployment === n.name ? "own" : n.deployment }), el("td", { text: String(f.replicas ?? "–") }),
    el("td", { class: "rps", text: num(f.rps) }), el("td", { text: num(f.p50_ms) }), el("td", { text: num(f.p95_ms) }),
    el("td", { text: num(f.errors_per_s) }), el("td", { text: pct(f.busy) }))));
  const chosen = spec.nodes.find((n) => n.name === state.selected);
  $("selected").replaceChildren(...(chosen ? [el("h2", { text: `Node ${chosen.name}` }), el("pre", { text: JSON.stringify({ ...chosen, live: live[chosen.name] }, null, 1) })] : []));
  const total = Object.values(live).reduce((s, f) => s + (f.rps || 0), 0);
  $("summary").textContent = `${spec.nodes.length} nodes · ${spec.deployments.length} deployments · bottleneck: ${(state.live && state.live.bottleneck) || "none"}`;
  document.body.dataset.totalRps = total.toFixed(3);
}

function select(name) {
  state.selected = state.selected === name ? null : name;
  render();
  const node = state.selected && document.querySelector(`g.node[data-node="${CSS.escape(state.selected)}"]`);
  if (node) node.scrollIntoView({ block: "center", inline: "center" });
}

function render() {
  if (!state.spec) return;
  $("graph-name").textContent = state.spec.name;
  document.title = `servegraph: ${state.spec.name}`;
  drawGraph();
  drawSide();
}

// ---- operator actions --------------------------------------------------------------------------

function ask(dialog, setup) {
  return new Promise((resolve) => {
    const d = $(dialog);
    const done = (value) => { d.close(); resolve(value); };
    setup(done);
    d.showModal();
  });
}

function tokenDialog() {
  return ask("token-dialog", (done) => {
    const input = $("token-input");
    input.value = "";
    $("token-ok").onclick = () => { const t = input.value.trim(); input.value = ""; if (t) sessionStorage.setItem(TOKEN_KEY, t); done(t || null); };
    $("token-forget").onclick = () => { sessionStorage.removeItem(TOKEN_KEY); input.value = ""; done(null); };
    $("token-cancel").onclick = () => { input.value = ""; done(null); };
    input.onkeydown = (e) => { if (e.key === "Enter") $("token-ok").click(); };
  });
}

function log(text, ok) {
  $("log").prepend(el("li", { class: ok ? "ok" : "error", text: `${new Date().toLocaleTimeString()} ${text}` }));
}

async function act(router, action, body) {
  const what = `${action} router ${router} of graph ${state.spec.name}` + (Object.keys(body).length ? ` with ${JSON.stringify(body)}` : "");
  const yes = await ask("confirm-dialog", (done) => {
    $("confirm-text").textContent = `Really ${what}? This changes live traffic.`;
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
  });
  if (!yes) return log(`cancelled: ${what}`, true);
  let token = sessionStorage.getItem(TOKEN_KEY) || (await tokenDialog());
  if (!token) return log(`not sent (no control token): ${what}`, false);
  const reply = await fetch(`${BASE}/routers/${encodeURIComponent(router)}/${encodeURIComponent(action)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  token = null;
  const answer = await reply.json().catch(() => ({}));
  if (reply.status === 401) sessionStorage.removeItem(TOKEN_KEY);
  if (reply.ok) log(`done: ${what}`, true);
  else log(`HTTP ${reply.status}: ${answer.detail || answer.error || "failed"} (${what})`, false);
  if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
  await refresh(true);
}

// ---- polling -----------------------------------------------------------------------------------

async function getJSON(path) {
  const reply = await fetch(`${BASE}/${path}`, { cache: "no-store" });
  if (!reply.ok) throw new Error(`${path}: HTTP ${reply.status}`);
  return reply.json();
}

let busy = false;
let tick = 0;
async function refresh(all = false) {
  if (busy && !all) return;
  busy = true;
  try {
    const wantExperiments = all || tick % 3 === 0;
    const [spec, live, experiments] = await Promise.all([
      getJSON("graph"),
      getJSON("live"),
      wantExperiments ? getJSON("experiments").catch(() => state.experiments) : state.experiments,
    ]);
    Object.assign(state, { spec, live, experiments });
    state.updates += 1;
    document.body.dataset.updates = String(state.updates);
    $("error").hidden = true;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    render();
  } catch (exc) {
    $("error").hidden = false;
    $("error").textContent = `cannot reach the graph: ${exc.message}`;
  } finally {
    busy = false;
    tick += 1;
  }
}

$("zoom").addEventListener("change", render);
$("token-button").addEventListener("click", () => tokenDialog());
window.addEventListener("resize", render);
refresh(true);
setInterval(refresh, 1000);
