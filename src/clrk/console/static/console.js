// The clrk console: a page per hash route (#/overview, #/agents, ...), each drawn from the
// console API (/console/api). Every value from the API becomes a text node (no HTML is
// ever built from data), and nothing is loaded from anywhere but this server.
"use strict";

const API = "/console/api";
let pollTimer = null;

// ---- DOM helpers -----------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function table(id, columns, rows, empty) {
  if (!rows.length) return h("p", {class: "muted", id}, empty || "Nothing yet.");
  return h("table", {id},
    h("thead", {}, h("tr", {}, columns.map(c => h("th", {class: c.num ? "num" : null}, c.title)))),
    h("tbody", {}, rows.map(r => h("tr", {}, columns.map(c =>
      h("td", {class: c.num ? "num" : (c.wrap ? "wrap" : null)}, c.cell(r)))))));
}

function badge(text) { return h("span", {class: "badge " + String(text || "")}, text || "-"); }
function num(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
function ms(n) { return n === null || n === undefined ? "-" : `${Number(n).toLocaleString("en-US")} ms`; }
function pct(n) { return n === null || n === undefined ? "-" : `${(n * 100).toFixed(1)}%`; }
function when(t) { return t ? new Date(t).toLocaleString() : "-"; }
function cost(usd, unpriced) {
  if (unpriced && (usd === "0" || !usd)) return h("span", {class: "unpriced"}, "unpriced");
  const base = `$${usd || "0"}`;
  return unpriced ? h("span", {}, base, " ", h("span", {class: "unpriced"}, `+ ${unpriced} unpriced`))
                  : base;
}
function agentLink(ns, kind, name) {
  return h("a", {href: `#/agents/${enc(ns)}/${enc(kind)}/${enc(name)}`}, `${ns}/${name}`);
}
function invocationLink(ns, name) {
  return h("a", {href: `#/invocations/${enc(ns)}/${enc(name)}`}, name);
}
function enc(x) { return encodeURIComponent(x || ""); }
function tile(label, value, id) {
  return h("div", {class: "tile", id}, h("div", {class: "label"}, label), h("div", {class: "value"}, value));
}
function card(...children) { return h("section", {class: "card"}, ...children); }
function conditions(list) {
  if (!list || !list.length) return h("span", {class: "muted"}, "none");
  return h("span", {}, list.map(c => h("span", {title: c.message || ""},
    badge(`${c.parent ? c.parent + ": " : ""}${c.type}=${c.status}`), " ")));
}

// ---- data ------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function get(path) {
  const r = await fetch(API + path, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (r.status === 401) { window.location.assign("/console/login"); throw new Unauthorized(); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function windowChooser(page, current) {
  return h("span", {class: "windows"}, ["1h", "24h", "7d"].map(w =>
    h("a", {href: `#/${page}?window=${w}`, class: w === current ? "active" : null}, w)));
}

// ---- pages -----------------------------------------------------------------------------

function chart(points, bucket, since, until) {
  const width = 1000, height = 160, pad = 18;
  const svg = s("svg", {class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
                        "aria-label": "invocations over time"});
  if (!points.length) {
    svg.append(s("text", {x: width / 2, y: height / 2, "text-anchor": "middle"}, "no invocations in this window"));
    return svg;
  }
  const max = Math.max(1, ...points.map(p => p.invocations));
  const t0 = Date.parse(since), t1 = Date.parse(until);
  const span = Math.max(bucket * 1000, t1 - t0);
  const bw = Math.max(2, (width - 2 * pad) * bucket * 1000 / span - 1);
  for (const p of points) {
    const x = pad + (width - 2 * pad) * (Date.parse(p.time) - t0) / span;
    const hOk = (height - 2 * pad) * (p.invocations - p.failed) / max;
    const hBad = (height - 2 * pad) * p.failed / max;
    const title = s("title", {}, `${new Date(p.time).toLocaleString()}: ${p.invocations} invocations, ` +
      `${p.failed} failed, ${p.tokens} tokens, $${p.costUSD}, ${p.denied} denied`);
    const g = s("g", {}, title);
    g.append(s("rect", {class: "ok", x, y: height - pad - hOk - hBad, width: bw, height: hOk}));
    g.append(s("rect", {class: "bad", x, y: height - pad - hBad, width: bw, height: hBad}));
    svg.append(g);
  }
  svg.append(s("text", {x: pad, y: 12}, `max ${max} per ${bucket >= 3600 ? bucket / 3600 + " h" : bucket / 60 + " min"}`));
  svg.append(s("text", {x: pad, y: height - 4}, new Date(t0).toLocaleString()));
  svg.append(s("text", {x: width - pad, y: height - 4, "text-anchor": "end"}, new Date(t1).toLocaleString()));
  return svg;
}

const agentStatColumns = [
  {title: "Invocations", num: true, cell: r => num(r.stats ? r.stats.invocations : r.invocations)},
  {title: "Errors", num: true, cell: r => num(r.stats ? r.stats.failed : r.failed)},
  {title: "p50", num: true, cell: r => ms(r.stats ? r.stats.p50Ms : r.p50Ms)},
  {title: "p95", num: true, cell: r => ms(r.stats ? r.stats.p95Ms : r.p95Ms)},
  {title: "Tokens in/out", num: true, cell: r => { const x = r.stats || r; return r.stats === null ? "-" : `${num(x.inputTokens)} / ${num(x.outputTokens)}`; }},
  {title: "Cost", num: true, cell: r => { const x = r.stats || r; return r.stats === null ? "-" : cost(x.costUSD, x.unpricedCalls); }},
  {title: "Denied", num: true, cell: r => num(r.stats ? r.stats.denied : r.denied)},
];

const invocationColumns = [
  {title: "Invocation", cell: r => invocationLink(r.namespace, r.name)},
  {title: "Agent", cell: r => agentLink(r.namespace, r.agentKind, r.agentName)},
  {title: "Phase", cell: r => badge(r.phase)},
  {title: "Started", cell: r => when(r.startTime)},
  {title: "Duration", num: true, cell: r => ms(r.durationMs)},
  {title: "Tokens in/out", num: true, cell: r => r.inputTokens === undefined ? "-" : `${num(r.inputTokens)} / ${num(r.outputTokens)}`},
  {title: "Cost", num: true, cell: r => r.costUSD === undefined ? "-" : cost(r.costUSD, r.unpricedCalls)},
  {title: "Denied", num: true, cell: r => num(r.denied)},
];

async function overview(q) {
  const d = await get(`/overview?window=${enc(q.get("window") || "24h")}`);
  const t = d.totals;
  return [
    h("h1", {}, "Overview", windowChooser("overview", d.window)),
    h("div", {class: "tiles"},
      tile("Invocations", num(t.invocations), "tile-invocations"),
      tile("Running now", num(d.running)),
      tile("Success rate", t.invocations ? pct(t.succeeded / t.invocations) : "-"),
      tile("Error rate", pct(t.errorRate)),
      tile("p50 duration", ms(t.p50Ms)), tile("p95 duration", ms(t.p95Ms)),
      tile("Tokens in", num(t.inputTokens)), tile("Tokens out", num(t.outputTokens)),
      tile("Cost", cost(t.costUSD, t.unpricedCalls), "tile-cost"),
      tile("Denied egress", num(t.denied), "tile-denied")),
    card(h("h2", {}, "Invocations over time"), chart(d.chart, d.bucketSeconds, d.since, d.until)),
    card(h("h2", {}, "Top agents"), table("top-agents", [
      {title: "Agent", cell: r => agentLink(r.namespace, r.kind, r.name)}, ...agentStatColumns],
      d.topAgents, "No agent ran in this window.")),
    card(h("h2", {}, "Recent invocations"), table("recent-invocations", invocationColumns, d.recent)),
  ];
}

async function agents(q) {
  const d = await get(`/agents?window=${enc(q.get("window") || "24h")}`);
  return [
    h("h1", {}, "Agents", windowChooser("agents", d.window)),
    card(table("agents-table", [
      {title: "Kind", cell: r => r.kind},
      {title: "Agent", cell: r => agentLink(r.namespace, r.kind, r.name)},
      {title: "Phase", cell: r => h("span", {title: r.reason || ""}, badge(r.phase),
        r.reason ? ` ${r.reason}` : "", r.process && r.process !== r.phase ? ` (process ${r.process})` : "")},
      {title: "Revision", cell: r => [r.revision || "-", r.pinned ? " (pinned)" : ""]},
      {title: "Pool", cell: r => r.pool || "-"},
      {title: "Gateway", cell: r => r.gateway || "-"},
      ...agentStatColumns], d.items, "No TaskAgents or DaemonAgents yet.")),
  ];
}

async function agent(params, q) {
  const [ns, kind, name] = params;
  const d = await get(`/agents/${enc(ns)}/${enc(kind)}/${enc(name)}?window=${enc(q.get("window") || "24h")}`);
  const st = d.stats;
  return [
    h("h1", {}, `${kind} ${ns}/${name} `, badge(d.agent.phase),
      d.agent.reason ? h("span", {class: "muted", title: d.agent.message || ""}, ` ${d.agent.reason}`) : null,
      windowChooser(`agents/${enc(ns)}/${enc(kind)}/${enc(name)}`, d.window)),
    h("div", {class: "tiles"},
      tile("Invocations", num(st.invocations)), tile("Errors", num(st.failed)),
      tile("p50", ms(st.p50Ms)), tile("p95", ms(st.p95Ms)),
      tile("Tokens in/out", `${num(st.inputTokens)} / ${num(st.outputTokens)}`),
      tile("Cost", cost(st.costUSD, st.unpricedCalls)), tile("Denied egress", num(st.denied))),
    card(h("h2", {}, "Invocations"), table("agent-invocations", invocationColumns, d.invocations)),
    card(h("h2", {}, "Revisions"), d.pinnedRevision ? h("p", {}, "Pinned to ", h("strong", {}, d.pinnedRevision)) : null,
      table("revisions", [
        {title: "Revision", cell: r => [r.name, r.name === d.agent.status.servingRevisionName ? " (serving)" : ""]},
        {title: "Generation", num: true, cell: r => num(r.generation)},
        {title: "Image", cell: r => r.image},
        {title: "Conditions", wrap: true, cell: r => conditions(r.conditions)},
        {title: "Created", cell: r => when(r.created)}], d.revisions)),
    card(h("h2", {}, "Egress"), d.gateway
      ? h("p", {}, "Gateway ", h("strong", {}, d.gateway.name), " ", conditions(d.gateway.conditions))
      : h("p", {class: "muted"}, "No egress gateway: all egress is denied."),
      table("agent-routes", [{title: "Route", cell: r => `${r.kind} ${r.name}`},
                             {title: "Conditions", wrap: true, cell: r => conditions(r.conditions)}], d.routes, "No routes.")),
    card(h("h2", {}, "Conditions"), table("agent-conditions", [
      {title: "Type", cell: c => c.type}, {title: "Status", cell: c => badge(c.status)},
      {title: "Reason", cell: c => c.reason || ""}, {title: "Message", wrap: true, cell: c => c.message || ""}],
      d.conditions)),
    card(h("h2", {}, "Events"), table("agent-events", [
      {title: "Type", cell: e => e.type}, {title: "Reason", cell: e => e.reason},
      {title: "Message", wrap: true, cell: e => e.message}, {title: "Count", num: true, cell: e => num(e.count)},
      {title: "Last", cell: e => when(e.lastTimestamp)}], d.events, "No events.")),
    card(h("h2", {}, "YAML"), h("pre", {id: "agent-yaml"}, d.yaml)),
  ];
}

async function invocations(q) {
  const d = await get(`/invocations?limit=200`);
  return [h("h1", {}, "Invocations"), card(table("invocations-table", invocationColumns, d.items))];
}

function spanLabel(sp) {
  const parts = [badge(sp.kind), " ", sp.name];
  if (sp.decision === "deny") parts.push(" ", badge("deny"));
  return parts;
}

function spanMeta(sp) {
  const bits = [];
  if (sp.kind === "llm") {
    bits.push(`${sp.provider} ${sp.model || "?"}`, `${num(sp.inputTokens)} in / ${num(sp.outputTokens)} out tokens`);
    if (sp.cacheReadTokens) bits.push(`${num(sp.cacheReadTokens)} cache-read`);
    if (sp.cacheWriteTokens) bits.push(`${num(sp.cacheWriteTokens)} cache-write`);
    if (sp.reasoningTokens) bits.push(`${num(sp.reasoningTokens)} reasoning`);
    bits.push(sp.streamed ? "streamed" : "not streamed");
  }
  if (sp.kind === "mcp" && sp.tool) bits.push(`tool ${sp.tool}`);
  if (sp.kind === "mcp") bits.push(sp.decision === "deny" ? "refused" : "allowed");
  if (sp.kind !== "invocation" && sp.host) bits.push(sp.host);
  if (sp.route) bits.push(`route ${sp.route}`);
  bits.push(ms(sp.durationMs));
  const out = [bits.join(" · ")];
  if (sp.kind === "llm") out.push(" · ", h("span", {class: "cost"}, sp.unpriced ? h("span", {class: "unpriced"}, "unpriced") : `$${sp.costUSD}`));
  if (sp.reason && sp.status !== "Ok") out.push(h("div", {class: "denied"}, sp.reason));
  return out;
}

function traceTree(spans, onSelect) {
  if (!spans.length) return h("p", {class: "muted"}, "No spans recorded for this invocation (yet).");
  const ids = new Set(spans.map(x => x.spanId));
  const children = new Map();
  const roots = [];
  for (const sp of spans) {
    if (sp.parentSpanId && ids.has(sp.parentSpanId)) {
      if (!children.has(sp.parentSpanId)) children.set(sp.parentSpanId, []);
      children.get(sp.parentSpanId).push(sp);
    } else roots.push(sp);
  }
  const t0 = Math.min(...spans.map(x => Date.parse(x.startTime)));
  const t1 = Math.max(...spans.map(x => Date.parse(x.startTime) + x.durationMs));
  const total = Math.max(1, t1 - t0);
  const rows = [];
  const walk = (sp, depth, seen) => {
    const left = 100 * (Date.parse(sp.startTime) - t0) / total;
    const width = Math.max(0.3, 100 * sp.durationMs / total);
    const row = h("div", {class: "row", "data-kind": sp.kind, "data-span": sp.spanId,
                          "data-decision": sp.decision || null, tabindex: 0},
      h("div", {class: "label"},
        h("span", {class: "indent"}, "\u2003".repeat(depth)), spanLabel(sp),
        h("div", {class: "meta"}, spanMeta(sp))),
      h("div", {}, h("div", {class: "timeline"},
        h("span", {class: `${sp.kind} ${sp.decision || ""} ${sp.status}`}))));
    row.querySelector(".timeline span").style.left = `${left}%`;
    row.querySelector(".timeline span").style.width = `${Math.min(width, 100 - left)}%`;
    row.addEventListener("click", () => onSelect(sp, row));
    rows.push(row);
    for (const c of children.get(sp.spanId) || []) if (!seen.has(c.spanId)) walk(c, depth + 1, new Set([...seen, c.spanId]));
  };
  for (const r of roots) walk(r, 0, new Set([r.spanId]));
  return h("div", {class: "tree", id: "trace-tree"}, rows);
}

async function showSpan(traceId, sp, row, panel) {
  document.querySelectorAll(".tree .row.selected").forEach(x => x.classList.remove("selected"));
  row.classList.add("selected");
  panel.replaceChildren(h("p", {class: "muted"}, "Loading the span..."));
  const d = await get(`/spans/${enc(traceId)}/${enc(sp.spanId)}`);
  const kv = (obj) => h("dl", {class: "kv"}, Object.keys(obj).sort().map(k => [h("dt", {}, k), h("dd", {}, obj[k])]));
  panel.replaceChildren(h("h2", {}, d.name),
    h("p", {}, badge(d.status), " ", d.statusMessage || "", " · ", ms(d.durationMs), " · ", when(d.startTime)),
    h("h3", {}, "Attributes"), kv(d.attributes),
    ...d.events.flatMap(e => [h("h3", {}, e.name), kv(e.attributes)]));
}

async function invocation(params) {
  const [ns, name] = params;
  const d = await get(`/invocations/${enc(ns)}/${enc(name)}`);
  const inv = d.invocation, spec = inv.spec, st = inv.status || {};
  const panel = h("div", {class: "detail", id: "span-detail"}, h("p", {class: "muted"},
    "Select a span to see its attributes, headers (redacted) and any captured bodies."));
  const out = (stream) => d.output.filter(l => l.stream === stream).map(l => l.message).join("\n");
  return [
    h("h1", {}, `Invocation ${name} `, badge(st.phase)),
    card(h("dl", {class: "kv", id: "invocation-facts"},
      h("dt", {}, "Agent"), h("dd", {}, agentLink(ns, spec.agentKind, spec.agentName)),
      h("dt", {}, "Trigger"), h("dd", {}, spec.trigger || "-"),
      h("dt", {}, "Revision"), h("dd", {}, spec.revision || "-"),
      h("dt", {}, "Worker"), h("dd", {}, st.worker || "-"),
      h("dt", {}, "Created"), h("dd", {}, when(inv.metadata.creationTimestamp)),
      h("dt", {}, "Started"), h("dd", {}, when(st.startTime)),
      h("dt", {}, "Completed"), h("dd", {}, when(st.completionTime)),
      h("dt", {}, "Exit code"), h("dd", {}, st.exitCode === undefined ? "-" : st.exitCode),
      h("dt", {}, "Reason"), h("dd", {}, st.reason || "-"),
      h("dt", {}, "Trace"), h("dd", {}, spec.traceId || "-"))),
    card(h("h2", {}, "Trace"), traceTree(d.spans, (sp, row) => showSpan(spec.traceId, sp, row, panel)
      .catch(err => panel.replaceChildren(h("p", {class: "error-box"}, String(err.message))))), panel),
    card(h("h2", {}, "stdout"), h("pre", {id: "stdout"}, out("stdout") || "(empty)"),
      h("h2", {}, "stderr"), h("pre", {id: "stderr", class: "stderr"}, out("stderr") || "(empty)"),
      d.outputTruncated ? h("p", {class: "muted"}, "Only the first lines are shown; clrk logs has the rest.") : null),
  ];
}

const spendColumns = [
  {title: "Calls", num: true, cell: r => num(r.calls)},
  {title: "Input", num: true, cell: r => num(r.inputTokens)},
  {title: "Output", num: true, cell: r => num(r.outputTokens)},
  {title: "Cache read", num: true, cell: r => num(r.cacheReadTokens)},
  {title: "Cache write", num: true, cell: r => num(r.cacheWriteTokens)},
  {title: "Reasoning", num: true, cell: r => num(r.reasoningTokens)},
  {title: "Cost", num: true, cell: r => cost(r.costUSD, r.unpricedCalls)},
];

async function spend(q) {
  const d = await get(`/spend?window=${enc(q.get("window") || "24h")}`);
  const t = d.totals;
  return [
    h("h1", {}, "Spend", windowChooser("spend", d.window)),
    h("div", {class: "tiles"}, tile("Cost", cost(t.costUSD, t.unpricedCalls), "spend-total"),
      tile("LLM calls", num(t.calls)), tile("Input tokens", num(t.inputTokens)),
      tile("Output tokens", num(t.outputTokens)), tile("Cache-read tokens", num(t.cacheReadTokens)),
      tile("Reasoning tokens", num(t.reasoningTokens))),
    card(h("h2", {}, "By model"), table("spend-by-model", [
      {title: "Provider", cell: r => r.provider}, {title: "Model", cell: r => r.model || "?"}, ...spendColumns], d.byModel)),
    card(h("h2", {}, "By agent"), table("spend-by-agent", [
      {title: "Agent", cell: r => agentLink(r.namespace, r.agentKind, r.agentName)}, ...spendColumns], d.byAgent)),
    card(h("h2", {}, "By provider"), table("spend-by-provider", [{title: "Provider", cell: r => r.provider}, ...spendColumns], d.byProvider)),
    card(h("h2", {}, "By gateway"), table("spend-by-gateway", [{title: "Gateway", cell: r => r.gateway || "-"}, ...spendColumns], d.byGateway)),
    card(h("h2", {}, "By route"), table("spend-by-route", [{title: "Route", cell: r => r.route || "-"}, ...spendColumns], d.byRoute)),
    card(h("h2", {}, "Per day"), table("spend-per-day", [
      {title: "Day", cell: r => r.day}, {title: "Provider", cell: r => r.provider},
      {title: "Model", cell: r => r.model || "?"}, ...spendColumns], d.perDay)),
    card(h("h2", {}, "Token budgets today"), table("budgets", [
      {title: "Route", cell: r => `${r.namespace}/${r.route} rule ${r.rule}`},
      {title: "Gateway", cell: r => r.gateway},
      {title: "Used today", num: true, cell: r => num(r.usedToday)},
      {title: "Day limit", num: true, cell: r => num(r.maxTokensPerDay)},
      {title: "Per execution", num: true, cell: r => num(r.maxTokensPerExecution)}], d.budgets, "No route has a token budget.")),
  ];
}

async function egress(q) {
  const d = await get(`/egress?window=${enc(q.get("window") || "24h")}`);
  return [
    h("h1", {}, "Egress", windowChooser("egress", d.window)),
    card(h("h2", {}, "Gateways"), table("gateways", [
      {title: "Gateway", cell: r => `${r.namespace}/${r.name}`},
      {title: "Listeners", wrap: true, cell: r => r.listeners.map(l => `${l.name} ${l.protocol}:${l.port}`).join(", ") || "-"},
      {title: "Conditions", wrap: true, cell: r => conditions(r.conditions)}], d.gateways, "No gateways.")),
    card(h("h2", {}, "Routes"), table("routes", [
      {title: "Route", cell: r => `${r.kind} ${r.namespace}/${r.name}`},
      {title: "Gateways", cell: r => r.parents.join(", ") || "-"},
      {title: "Conditions", wrap: true, cell: r => conditions(r.conditions)}], d.routes, "No routes.")),
    card(h("h2", {}, "Policies"), table("policies", [
      {title: "Policy", cell: r => `${r.kind} ${r.namespace}/${r.name}`},
      {title: "Conditions", wrap: true, cell: r => conditions(r.conditions)}], d.policies, "No policies.")),
    card(h("h2", {}, "Hosts reached or refused"), table("hosts", [
      {title: "Agent", cell: r => `${r.namespace}/${r.agentName || "?"}`},
      {title: "Host", cell: r => r.host || "-"}, {title: "Kind", cell: r => r.kind},
      {title: "Decision", cell: r => badge(r.decision || "allow")},
      {title: "Calls", num: true, cell: r => num(r.calls)},
      {title: "Last", cell: r => when(r.lastSeen)},
      {title: "Why refused", wrap: true, cell: r => r.reason || ""}], d.hosts, "No egress recorded in this window.")),
  ];
}

async function workers() {
  const d = await get(`/workers`);
  return [
    h("h1", {}, "Worker pools and workers"),
    card(h("h2", {}, "Pools"), table("pools", [
      {title: "Pool", cell: r => `${r.namespace}/${r.name}`},
      {title: "Replicas", num: true, cell: r => `${num(r.status.readyReplicas || 0)} / ${num(r.replicas)}`},
      {title: "Capacity", num: true, cell: r => num(r.status.capacity)},
      {title: "Warm sandboxes", num: true, cell: r => num(r.status.warmSandboxes)},
      {title: "Conditions", wrap: true, cell: r => conditions(r.conditions)}], d.pools, "No worker pools.")),
    card(h("h2", {}, "Workers"), table("workers", [
      {title: "Worker", cell: r => r.name}, {title: "Pool", cell: r => `${r.namespace}/${r.pool}`},
      {title: "In flight", num: true, cell: r => `${num(r.inFlight)} / ${num(r.capacity)}`},
      {title: "Warm", num: true, cell: r => num(r.warmSandboxes)},
      {title: "Cached images", num: true, cell: r => num(r.cachedImages.length)},
      {title: "Heartbeat", num: true, cell: r => `${r.heartbeatAgeSeconds} s ago`},
      {title: "State", cell: r => badge(r.stale ? "Error" : (r.draining ? "Pending" : "Ready"))}], d.workers, "No worker has reported.")),
  ];
}

async function live() {
  const feed = h("tbody", {id: "live-feed"});
  const running = h("div", {id: "live-running"});
  const status = h("p", {class: "muted", id: "live-status"}, "Following new invocations and calls...");
  let cursor = null;
  const seen = new Set();
  const tick = async () => {
    const d = await get(cursor ? `/live?after=${enc(cursor)}` : "/live");
    cursor = d.cursor;
    running.replaceChildren(table("running", [
      {title: "Running", cell: r => invocationLink(r.namespace, r.name)},
      {title: "Agent", cell: r => agentLink(r.namespace, r.agentKind, r.agentName)},
      {title: "Phase", cell: r => badge(r.phase)}, {title: "Since", cell: r => when(r.startTime)}],
      d.running, "Nothing running."));
    for (const it of d.items.slice().reverse()) {
      if (seen.has(it.spanId)) continue;
      seen.add(it.spanId);
      feed.prepend(h("tr", {"data-kind": it.kind},
        h("td", {}, when(it.recorded)), h("td", {}, badge(it.kind)),
        h("td", {}, it.agentName ? agentLink(it.namespace, it.agentKind, it.agentName) : "-"),
        h("td", {}, it.invocation ? invocationLink(it.namespace, it.invocation) : "-"),
        h("td", {class: "wrap"}, it.name, it.decision === "deny" ? [" ", badge("deny"), " ", it.reason] : ""),
        h("td", {}, badge(it.status)), h("td", {class: "num"}, ms(it.durationMs)),
        h("td", {class: "num"}, it.kind === "llm" ? [`${num(it.inputTokens)}/${num(it.outputTokens)} `, cost(it.costUSD, it.unpriced ? 1 : 0)] : "")));
    }
    while (feed.children.length > 500) feed.lastChild.remove();
    status.textContent = `Following new invocations and calls; updated ${new Date().toLocaleTimeString()}.`;
  };
  await tick();
  pollTimer = setInterval(() => tick().catch(err => { status.textContent = String(err.message); }), 2000);
  return [h("h1", {}, "Live"), status, card(running),
          card(h("table", {id: "live-table"}, h("thead", {}, h("tr", {},
            ["Recorded", "Kind", "Agent", "Invocation", "Call", "Status", "Duration", "Tokens / cost"].map(t => h("th", {}, t)))), feed))];
}

// ---- routing ---------------------------------------------------------------------------

const pages = {overview, agents, invocations, spend, egress, workers, live};

async function route() {
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  const [path, query] = (window.location.hash.replace(/^#\/?/, "") || "overview").split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const q = new URLSearchParams(query || "");
  const main = document.getElementById("main");
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.dataset.page === parts[0]));
  main.replaceChildren(h("p", {class: "muted"}, "Loading..."));
  try {
    let content;
    if (parts[0] === "agents" && parts.length === 4) content = await agent(parts.slice(1), q);
    else if (parts[0] === "invocations" && parts.length === 3) content = await invocation(parts.slice(1));
    else if (pages[parts[0]]) content = await pages[parts[0]](q);
    else content = [h("h1", {}, "Not found"), h("p", {}, `No page ${path}.`)];
    main.replaceChildren(...content.flat());
    document.title = `clrk console: ${parts[0]}`;
    main.dataset.page = parts[0];
    main.dataset.ready = "true";
  } catch (err) {
    if (err instanceof Unauthorized) return;
    main.replaceChildren(h("p", {class: "error-box", role: "alert"}, String(err.message || err)));
  }
}

async function start() {
  try {
    const r = await fetch("/console/session", {credentials: "same-origin"});
    if (r.status === 401) { window.location.assign("/console/login"); return; }
    const me = await r.json();
    document.getElementById("user").textContent = me.user;
  } catch (err) { /* the page still works; the name is only shown */ }
  window.addEventListener("hashchange", () => { document.getElementById("main").dataset.ready = "false"; route(); });
  route();
}

document.addEventListener("DOMContentLoaded", start);
