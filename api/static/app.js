// mendloop web page: board, incident page, region view. Vanilla JS, no build step.
// Data comes from the REST API with the token as a Bearer header; live moves come from
// Server-Sent Events opened with a short-lived single-use ticket (docs/WEB.md).
"use strict";

const TOKEN_KEY = "mendloop.token";
const COLUMNS = [
  ["open", "Open", ["open"]],
  ["analyzed", "Analyzed", ["analyzed"]],
  ["decided", "Decided", ["decided"]],
  ["awaiting_approval", "Awaiting approval", ["awaiting_approval"]],
  ["executing", "Executing", ["approved", "executing"]],
  ["verifying", "Verifying", ["verifying"]],
  ["ended", "Ended", ["resolved", "rolled_back", "escalated", "rejected", "closed"]],
];
const RANK = { viewer: 0, operator: 1, approver: 2, admin: 3 };

const app = {
  me: null, // {name, role, auth}
  incidents: new Map(), // id -> summary {id, target, state, fault, reason, updated_at, note}
  source: null,
  lastId: null,
  retry: null,
  refresh: null,
  viewing: null, // incident id shown on the incident page
};

// -- helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const svg = ["svg", "polyline", "line", "text", "rect", "g"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// replaceChildren without the null/false of optional parts (it would print "null")
function fill(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }
function say(text, isError) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = isError ? "message error" : "message";
}
function fmt(n, digits = 2) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en", { maximumFractionDigits: digits });
}
function when(ts) { return new Date(ts * 1000).toISOString().slice(11, 19); }
function clock(iso) { return iso ? iso.slice(11, 19) : ""; }

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token()) headers.Authorization = "Bearer " + token();
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  if (answer.status === 401) {
    showLogin("The token was not accepted; paste a valid one.");
    throw new HttpError(401, "not signed in");
  }
  if (!answer.ok) {
    let detail = answer.statusText;
    try { detail = (await answer.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new HttpError(answer.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return answer.json();
}

// -- sign-in ---------------------------------------------------------------------------

function showLogin(error) {
  stopStream();
  document.getElementById("login").hidden = false;
  document.getElementById("view").replaceChildren();
  document.getElementById("login-error").textContent = error || "";
}

async function boot() {
  try {
    app.me = await api("/v1/web/me");
  } catch (err) {
    if (!(err instanceof HttpError && err.status === 401)) say("API unreachable: " + err.message, true);
    return;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("who").textContent = app.me.auth
    ? `${app.me.name} (${app.me.role})` : "authentication off";
  document.getElementById("who").dataset.role = app.me.role;
  document.getElementById("sign-out").hidden = !app.me.auth;
  connectStream();
  route();
}

function canApprove() { return app.me && RANK[app.me.role] >= RANK.approver; }

// -- the event stream --------------------------------------------------------------------

function stopStream() {
  if (app.source) app.source.close();
  app.source = null;
  clearTimeout(app.retry);
  setStream(false, "offline");
}

function setStream(live, text) {
  const s = document.getElementById("stream");
  s.className = "stream " + (live ? "live" : "off");
  s.textContent = text;
}

async function connectStream() {
  stopStream();
  const params = new URLSearchParams();
  try {
    if (app.me.auth) params.set("ticket", (await api("/v1/events/ticket", { method: "POST" })).ticket);
  } catch (err) {
    if (err.status !== 401) app.retry = setTimeout(connectStream, 3000);
    return;
  }
  if (app.lastId !== null) params.set("last_id", app.lastId);
  const source = new EventSource("/v1/events?" + params.toString());
  app.source = source;
  source.addEventListener("hello", (e) => {
    const first = app.lastId === null;
    app.lastId = JSON.parse(e.data).last_id;
    setStream(true, "live");
    if (first) route(); // anything that moved before the stream opened is in the fresh load
  });
  source.addEventListener("stage", (e) => {
    app.lastId = Number(e.lastEventId);
    onStage(JSON.parse(e.data));
  });
  source.addEventListener("automation", (e) => {
    app.lastId = Number(e.lastEventId);
    const banner = document.getElementById("automation");
    banner.textContent = JSON.parse(e.data).note;
    banner.hidden = false;
  });
  source.addEventListener("resync", (e) => {
    app.lastId = Number(e.lastEventId);
    route();
  });
  source.addEventListener("bye", () => { source.close(); app.retry = setTimeout(connectStream, 200); });
  source.onerror = () => {
    // a ticket opens one stream once: reconnect ourselves with a fresh one
    source.close();
    setStream(false, "reconnecting");
    app.retry = setTimeout(connectStream, 2000);
  };
}

function onStage(event) {
  const known = app.incidents.get(event.incident_id);
  const summary = { ...(known || {}), id: event.incident_id, target: event.target,
    state: event.state, note: event.note, updated_at: event.at };
  app.incidents.set(event.incident_id, summary);
  const board = document.querySelector(".board");
  if (board) {
    placeCard(board, summary, true);
    if (!known || !known.fault) refreshSummary(event.incident_id);
  }
  if (app.viewing === event.incident_id) showIncident(event.incident_id);
}

async function refreshSummary(id) {
  try {
    const full = await api(`/v1/incidents/${encodeURIComponent(id)}`);
    const current = app.incidents.get(id) || {};
    const merged = { ...current, fault: full.fault, reason: full.reason, opened_at: full.opened_at };
    if (!current.updated_at || full.updated_at >= current.updated_at) {
      merged.state = full.state;
      merged.updated_at = full.updated_at;
    }
    app.incidents.set(id, merged);
    const board = document.querySelector(".board");
    if (board) placeCard(board, merged, false);
  } catch (_) { /* shown on the next move */ }
}

// -- routing -------------------------------------------------------------------------------

function route() {
  if (!app.me) return;
  clearInterval(app.refresh);
  const hash = location.hash || "#/";
  const incident = hash.match(/^#\/incident\/([A-Za-z0-9_-]+)$/);
  app.viewing = incident ? incident[1] : null;
  if (incident) showIncident(incident[1]);
  else if (hash === "#/regions") { showRegions(); app.refresh = setInterval(showRegions, 10000); }
  else { showBoard(); app.refresh = setInterval(refreshSqi, 10000); }
}

// -- board -----------------------------------------------------------------------------------

function columnOf(state) {
  const col = COLUMNS.find(([, , states]) => states.includes(state));
  return col ? col[0] : "ended";
}

function placeCard(board, inc, moved) {
  let card = board.querySelector(`.card[data-incident-id="${CSS.escape(inc.id)}"]`);
  const fresh = h("a", { class: `card state-${inc.state}${moved ? " moved" : ""}`,
    href: `#/incident/${inc.id}`, "data-incident-id": inc.id, "data-state": inc.state },
  h("div", { class: "id" }, inc.id),
  h("div", {}, h("strong", {}, inc.target), inc.fault ? ` · ${inc.fault}` : ""),
  h("div", {}, h("span", { class: "state-badge" }, inc.state.replace("_", " ")), " ",
    h("span", { class: "muted" }, clock(inc.updated_at))),
  inc.note || inc.reason ? h("div", { class: "note" }, inc.note || inc.reason) : null);
  const column = board.querySelector(`.column[data-column="${columnOf(inc.state)}"] .cards`);
  if (card) card.remove();
  column.prepend(fresh);
  for (const col of board.querySelectorAll(".column")) {
    col.querySelector(".count").textContent = col.querySelectorAll(".card").length;
  }
}

async function showBoard() {
  const board = h("div", { class: "board" }, COLUMNS.map(([key, title]) =>
    h("div", { class: "column", "data-column": key },
      h("h3", {}, title, h("span", { class: "count" }, "0")), h("div", { class: "cards" }))));
  const view = document.getElementById("view");
  view.replaceChildren(h("h1", {}, "Incidents"), h("div", { class: "sqi-strip", id: "sqi" }), board);
  refreshSqi();
  let list;
  try { list = await api("/v1/incidents?limit=200"); } catch (err) { say(err.message, true); return; }
  if (document.querySelector(".board") !== board) return;
  for (const inc of list.reverse()) {
    const known = app.incidents.get(inc.id);
    const merged = known && known.updated_at > inc.updated_at ? { ...inc, ...known } : inc;
    app.incidents.set(inc.id, merged);
    placeCard(board, merged, false);
  }
}

async function refreshSqi() {
  const strip = document.getElementById("sqi");
  if (!strip) return;
  try {
    const rows = await api("/v1/web/sqi");
    strip.replaceChildren(...rows.map((r) => h("span",
      { class: "sqi" + (r.alert ? " alert" : ""), "data-target": r.target },
      `${r.target}: SQI ${fmt(r.sqi, 1)}`)));
  } catch (_) { /* next round */ }
}

// -- incident page -------------------------------------------------------------------------

let rendering = 0;

async function showIncident(id) {
  const ticket = ++rendering;
  let inc;
  try { inc = await api(`/v1/incidents/${encodeURIComponent(id)}`); } catch (err) {
    document.getElementById("view").replaceChildren(h("p", { class: "error" }, err.message));
    return;
  }
  if (ticket !== rendering || app.viewing !== id) return;
  const typing = document.getElementById("approval-comment");
  const comment = typing ? typing.value : "";
  const view = document.getElementById("view");
  fill(view,
    h("h1", {}, `Incident ${inc.id} `, h("span", { class: "state-badge", id: "incident-state",
      "data-state": inc.state }, inc.state.replace("_", " "))),
    h("p", {}, h("strong", {}, inc.target), inc.fault ? ` · ${inc.fault}` : "",
      inc.reason ? h("span", { class: "muted" }, ` · ${inc.reason}`) : ""),
    approvalPanel(inc, comment),
    h("div", { class: "panel", id: "sqi" }, "SQI …"),
    timelinePanel(inc),
    rcaPanel(inc),
    similarPanel(inc),
    decisionPanel(inc),
    executionPanel(inc),
    verificationPanel(inc),
    h("div", { class: "panel" }, h("h2", {}, "Metrics that mattered"),
      h("div", { class: "charts", id: "charts" }, h("span", { class: "muted" }, "loading…"))),
  );
  loadIncidentSqi(inc.target);
  loadSimilar(inc);
  loadCharts(inc);
}

function approvalPanel(inc, comment) {
  if (inc.state !== "awaiting_approval") return null;
  const plan = inc.plan;
  const panel = h("div", { class: "panel approval", id: "approval" },
    h("h2", {}, "Waiting for approval"),
    plan ? planDetails(plan) : h("p", { class: "muted" }, "No plan recorded (older incident)."));
  if (!canApprove()) {
    panel.append(h("p", { class: "muted", id: "approval-role" },
      `Approving needs the approver role; you are ${app.me.role}.`));
    return panel;
  }
  const box = h("textarea", { id: "approval-comment", placeholder: "comment (optional)" });
  box.value = comment;
  const decide = async (verb) => {
    for (const b of panel.querySelectorAll("button")) b.disabled = true;
    try {
      const body = { comment: box.value };
      if (plan) body.plan_hash = plan.plan_hash;
      const out = await api(`/v1/incidents/${encodeURIComponent(inc.id)}/${verb}`,
        { method: "POST", body });
      say(`${verb === "approve" ? "Approved" : "Rejected"}: ${out.state}`);
    } catch (err) {
      say(`${verb} refused: ${err.message}`, true);
      for (const b of panel.querySelectorAll("button")) b.disabled = false;
    }
  };
  panel.append(box,
    h("button", { class: "approve", id: "approve", type: "button", onclick: () => decide("approve") },
      "Approve"), " ",
    h("button", { class: "reject", id: "reject", type: "button", onclick: () => decide("reject") },
      "Reject"));
  return panel;
}

function planDetails(plan) {
  const vars = Object.entries(plan.extra_vars || {});
  return h("div", { id: "plan", "data-plan-hash": plan.plan_hash },
    h("p", {}, h("strong", {}, plan.title || plan.solution_id), ` · risk ${plan.risk}`,
      ` · playbook ${plan.playbook} on ${(plan.hosts || []).join(", ")}`),
    vars.length ? h("table", {}, h("tr", {}, h("th", {}, "variable"), h("th", {}, "value")),
      vars.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, String(v))))) : null,
    h("p", {}, `Dry run: ${plan.check_mode ? (plan.check_status || "not run") : "not supported"}`,
      `, ${plan.changed} change(s)`),
    plan.diff && plan.diff.length ? h("pre", { class: "diff" }, plan.diff.join("\n")) : null,
    h("p", {}, "Rollback: ", plan.rollback_playbook || "none"),
    h("p", { class: "muted" }, `Plan hash ${plan.plan_hash.slice(0, 16)}… (requested by ${plan.requested_by})`));
}

function timelinePanel(inc) {
  const opened = Date.parse(inc.opened_at);
  return h("div", { class: "panel" }, h("h2", {}, "Loop timeline"),
    h("table", { id: "timeline" }, h("tr", {}, h("th", {}, "after"), h("th", {}, "state"), h("th", {}, "note")),
      (inc.timeline || []).map((t) => h("tr", { "data-state": t.to_state },
        h("td", {}, `+${fmt((Date.parse(t.at) - opened) / 1000, 1)} s`),
        h("td", {}, t.to_state), h("td", {}, t.note)))));
}

function rcaPanel(inc) {
  const report = inc.report;
  if (!report) return h("div", { class: "panel" }, h("h2", {}, "Root cause"), h("p", { class: "muted" }, "not analysed yet"));
  return h("div", { class: "panel", id: "rca" }, h("h2", {}, "Root cause analysis"),
    report.unexplained ? unexplainedPanel(report.unexplained) : null,
    h("p", { class: "muted" }, `${report.candidates.length} candidate(s); report ${fmt(report.time_to_report_s, 1)} s after the first abnormal sample; analysis ${fmt(report.latency_ms, 1)} ms; SQI at report ${fmt(report.sqi, 1)}`),
    report.candidates.map((c, i) => h("div", { class: "candidate" },
      h("p", {}, h("strong", {}, `${i + 1}. ${c.fault}`), ` on ${c.component} · score ${fmt(c.score)}`,
        c.confidence !== null && c.confidence !== undefined ? ` · confidence ${fmt(c.confidence * 100, 0)} %` : "",
        c.fired ? "" : " · signature only"),
      c.why ? h("p", { class: "muted" }, c.why) : null,
      h("table", {}, h("tr", {}, ["series", "value", "threshold", "since", "how far off", "rule"].map((t) => h("th", {}, t))),
        [...c.evidence, ...(c.anomalies || [])].map((e) => h("tr", {},
          h("td", {}, e.series), h("td", {}, fmt(e.value)), h("td", {}, `${e.direction === "high" ? ">" : "<"} ${fmt(e.threshold)}`),
          h("td", {}, when(e.since)), h("td", {}, e.deviation === null || e.deviation === undefined ? "–" : `${fmt(e.deviation)}${e.source === "anomaly" ? " (ML)" : ""}`),
          h("td", {}, e.rule_id || (c.rules || []).join(", ") || e.source)))))));
}

// no rule explains the findings: the rule-free ranking (loop/unexplained.py); nothing is run
function unexplainedPanel(u) {
  const top = u.components[0];
  return h("div", { class: "candidate", id: "unexplained" },
    h("p", {}, h("strong", {}, top ? `Unknown fault on component ${top.component}` : "Unknown fault"),
      top ? ` · confidence ${fmt(top.confidence * 100, 0)} %` : "",
      " · no rule names it: ranked without rules, nothing is run"),
    h("table", {}, h("tr", {}, ["component", "confidence", "abnormal", "evidence"].map((t) => h("th", {}, t))),
      u.components.map((c) => h("tr", {}, h("td", {}, c.component), h("td", {}, `${fmt(c.confidence * 100, 0)} %`),
        h("td", {}, c.anomalous ? "yes" : "no"),
        h("td", {}, c.evidence.filter((e) => e.onset !== null).slice(0, 3)
          .map((e) => `${e.metric} ${fmt(e.value)} (usually ${fmt(e.baseline)})`).join("; ") || "–")))),
    h("p", { class: "muted" }, "Similar past cases (shown, not applied): ",
      u.similar.length ? u.similar.map((m) => `${m.case_id} ${fmt(m.similarity)} (fixed by ${m.solution_id})`).join(", ") : "none"));
}

function similarPanel(inc) {
  const m = inc.decision && inc.decision.match;
  return h("div", { class: "panel", id: "similar" }, h("h2", {}, "Similar cases"),
    m ? h("p", {}, "Chosen at decision: ", h("strong", {}, m.case_id), ` similarity ${fmt(m.similarity)}`,
      ` · solution ${m.solution_id} (success rate ${fmt(m.solution_success_rate)})`) : null,
    h("div", { id: "similar-now" }));
}

async function loadSimilar(inc) {
  if (!inc.report) return;
  const box = document.getElementById("similar-now");
  try {
    const found = await api(`/v1/incidents/${encodeURIComponent(inc.id)}/similar?k=5`);
    if (!box.isConnected) return;
    box.replaceChildren(h("table", {}, h("tr", {}, ["case (graph now)", "similarity", "outcome", "solution", "why"].map((t) => h("th", {}, t))),
      // the case this incident itself became (once learnt) is not "similar"
      found.matches.filter((r) => r.case_id !== `incident-${inc.id}`).map((r) => h("tr", { class: "similar-case" }, h("td", {}, h("strong", {}, r.case_id), h("br"), r.title),
        h("td", {}, fmt(r.similarity) + (r.same_problem ? " ✓" : "")), h("td", {}, r.outcome),
        h("td", {}, r.solution_id), h("td", { class: "muted" }, r.explanation)))));
  } catch (_) { /* only served with the engine's graph */ }
}

function decisionPanel(inc) {
  const d = inc.decision;
  if (!d) return null;
  const r = inc.remediation || {};  // the frozen plan: what runs (older incidents: none)
  const vars = Object.entries(r.extra_vars || {});
  return h("div", { class: "panel", id: "decision" }, h("h2", {}, "Decision"),
    h("p", {}, h("strong", {}, d.solution_id), ` · mode ${d.mode}`,
      r.playbook ? ` · playbook ${r.playbook}` : "",
      r.rollback_playbook ? ` · rollback ${r.rollback_playbook}` : ""),
    h("p", { class: "muted" }, d.reason),
    vars.length ? h("p", { class: "muted" }, "vars: " + vars.map(([k, v]) => `${k}=${v}`).join(", ")) : null,
    inc.plan && inc.state !== "awaiting_approval" ? h("div", {}, h("h2", {}, "Plan"), planDetails(inc.plan)) : null,
    inc.approval ? h("p", { id: "approved-by" }, `Approved by ${inc.approval.by} at ${clock(inc.approval.at)}`,
      inc.approval.comment ? `: ${inc.approval.comment}` : "",
      inc.approval.plan_hash ? h("span", { class: "muted" }, ` (plan ${inc.approval.plan_hash.slice(0, 12)}…)`) : "") : null);
}

function executionPanel(inc) {
  const x = inc.execution;
  if (!x) return null;
  const run = (r, label) => r ? h("div", {}, h("p", {}, `${label}: ${r.status} (rc ${r.rc}), ${r.changed} changed`),
    r.events && r.events.length ? h("pre", {}, r.events.slice(-30).join("\n")) : null) : null;
  return h("div", { class: "panel", id: "execution" }, h("h2", {}, `Execution: ${x.status}`),
    run(x.check_result, "dry run"), run(x.run, "run"));
}

function verificationPanel(inc) {
  const v = inc.verification;
  if (!v) return null;
  return h("div", { class: "panel", id: "verification" }, h("h2", {}, `Verification: ${v.status}`),
    h("p", { class: "muted" }, `decided after ${fmt(v.waited_s, 1)} s`),
    h("table", {}, h("tr", {}, ["series", "healthy", "value", "threshold"].map((t) => h("th", {}, t))),
      v.checks.map((c) => h("tr", {}, h("td", {}, c.series), h("td", {}, c.healthy ? "yes" : "no"),
        h("td", {}, fmt(c.value)), h("td", {}, fmt(c.threshold))))));
}

async function loadIncidentSqi(target) {
  const box = document.getElementById("sqi");
  try {
    const [row] = await api(`/v1/web/sqi?target=${encodeURIComponent(target)}`);
    if (!box.isConnected) return;
    box.replaceChildren(h("strong", {}, `SQI of ${target} now: ${fmt(row.sqi, 1)}`),
      row.alert ? h("span", { class: "error" }, " (below 80)") : "",
      h("span", { class: "muted" }, " " + Object.entries(row.roles).map(([k, v]) => `${k} ${fmt(v, 0)}`).join(" · ")));
  } catch (_) { box.textContent = "SQI unavailable"; }
}

function chartSeries(inc) {
  const names = [];
  const add = (s) => { if (s && !names.includes(s) && names.length < 8) names.push(s); };
  for (const c of (inc.report ? inc.report.candidates : []).filter((c) => c.fired)) {
    for (const e of c.evidence) add(e.series);
  }
  for (const c of inc.verification ? inc.verification.checks : []) add(c.series);
  for (const f of inc.findings || []) for (const s of f.series) add(s);
  return names;
}

async function loadCharts(inc) {
  const box = document.getElementById("charts");
  const names = chartSeries(inc);
  if (!names.length) { box.replaceChildren(h("span", { class: "muted" }, "no series named yet")); return; }
  let data;
  try {
    data = await api(`/v1/targets/${encodeURIComponent(inc.target)}/series?names=${encodeURIComponent(names.join(","))}`);
  } catch (err) { box.replaceChildren(h("span", { class: "error" }, err.message)); return; }
  if (!box.isConnected) return;
  const marks = (inc.timeline || []).filter((t) => ["open", "executing", "resolved", "rolled_back"].includes(t.to_state))
    .map((t) => [Date.parse(t.at) / 1000, t.to_state]);
  box.replaceChildren(...data.series.map((s) => chart(s, marks)));
}

function chart(s, marks) {
  const W = 320, H = 120, L = 40, B = 16;
  const pts = s.points;
  const wrap = h("div", { class: "chart", "data-series": s.name },
    h("div", { class: "title" }, `${s.name} (${s.unit})`));
  if (!pts.length) { wrap.append(h("div", { class: "muted" }, "no samples in the window")); return wrap; }
  const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
  const values = pts.map((p) => p[1]).concat([s.warn, s.crit]).filter(Number.isFinite);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 4);
  const y = (v) => 4 + (1 - (v - lo) / (hi - lo)) * (H - B - 8);
  const svg = h("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" },
    h("line", { class: "warn", x1: L, x2: W - 4, y1: y(s.warn), y2: y(s.warn) }),
    h("line", { class: "crit", x1: L, x2: W - 4, y1: y(s.crit), y2: y(s.crit) }),
    marks.filter(([t]) => t >= t0 && t <= t1).map(([t, label]) => h("g", {},
      h("line", { class: "mark", x1: x(t), x2: x(t), y1: 4, y2: H - B }),
      h("text", { x: x(t) + 2, y: 12 }, label))),
    h("polyline", { class: "line", points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }),
    h("text", { x: 2, y: y(hi) + 8 }, fmt(hi)), h("text", { x: 2, y: y(lo) }, fmt(lo)),
    h("text", { x: L, y: H - 3 }, when(t0)), h("text", { x: W - 48, y: H - 3 }, when(t1)));
  wrap.append(svg, h("div", { class: "muted" }, `warn ${fmt(s.warn)} · crit ${fmt(s.crit)} · now ${fmt(pts[pts.length - 1][1])}`));
  return wrap;
}

// -- regions ---------------------------------------------------------------------------------

async function showRegions() {
  let tree;
  try { tree = await api("/v1/web/regions"); } catch (err) { say(err.message, true); return; }
  if (location.hash !== "#/regions") return;
  const area = (a) => h("li", { class: "node" }, h("span", {
    class: "area" + (a.hot ? " hot" : ""), "data-area": a.name, "data-hot": a.hot ? "true" : "false" },
  h("span", {}, a.name),
  a.monitored ? h("span", {}, `${fmt(a.rate, 1)} complaints/h`) : h("span", { class: "muted" }, "not monitored"),
  a.monitored && a.regional_mean !== null ? h("span", { class: "muted" },
    `${fmt(a.ratio)}x the mean ${fmt(a.regional_mean, 1)} of ${a.region}`) : null,
  a.monitored ? h("span", { class: "muted" }, `(${a.targets.join(", ")})`) : null));
  const node = (n, kids) => h("li", { class: "node" + (n.hot ? " hot" : "") }, h("span", { class: "name" }, n.name), h("ul", {}, kids));
  fill(document.getElementById("view"),
    h("h1", {}, "Complaints by region"),
    h("p", { class: "muted" }, `${tree.series}; ${tree.rule} (factor ${tree.factor}).`),
    h("div", { class: "tree", id: "regions" }, h("ul", {}, tree.provinces.map((p) => node(p,
      p.cities.map((c) => node(c, c.districts.map((d) => node(d, d.areas.map(area))))))))),
    tree.unplaced.length ? h("p", { class: "muted" }, `Targets without a station area: ${tree.unplaced.join(", ")}`) : null);
}

// -- start -----------------------------------------------------------------------------------

document.getElementById("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("token-input");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  boot();
});
document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  app.me = null;
  showLogin("Signed out.");
});
window.addEventListener("hashchange", route);
boot();
