// The supervisor board: live calls with ticking durations, agents and their
// state, today's figures and a calls-per-hour plot drawn as inline SVG.
// Outside text goes through textContent only (el() in common.js).

import { t, applyI18n, locale } from "./i18n.js";
import { el, api, currentUser, setupHeader, connectHub, showConnection, formatDuration, formatTime, startTicking, callerLabel, formatNumber, remoteParty } from "./common.js";

applyI18n();

const calls = new Map(); // id → {call, card, endedSeen}
let agents = [];
let figures = null;

const user = await currentUser().catch(() => null);
setupHeader(user);
setupDemo(user);

/** `fiche demo`: admins get a button that makes the simulated phone system call now. */
function setupDemo(me) {
  if (!me || !me.demo || me.role !== "admin") return;
  const button = document.getElementById("simulate-call");
  const status = document.getElementById("demo-status");
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const placed = await api("POST", "/api/demo/calls");
      status.textContent = t("simulated", { what: placed.title });
    } catch (error) {
      status.textContent = t("simulate_failed", { why: error.message });
    } finally {
      button.disabled = false;
    }
  });
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function onMessage(msg) {
  switch (msg.type) {
    case "snapshot":
      calls.clear();
      for (const { call, card } of msg.calls || []) calls.set(call.id, { call, card });
      agents = msg.agents || [];
      figures = msg.figures || figures;
      renderAll();
      loadOverdue();
      if (!figures) loadFigures();
      return;
    case "call": {
      const entry = calls.get(msg.call.id) || { call: msg.call, card: null };
      entry.call = msg.call;
      calls.set(msg.call.id, entry);
      if (msg.call.state === "ended") {
        // The server keeps ended calls for its linger time; the board shows them briefly.
        setTimeout(() => { if (calls.get(msg.call.id)?.call.state === "ended") { calls.delete(msg.call.id); renderCalls(); } }, 15000);
      }
      renderCalls();
      return;
    }
    case "card": {
      const entry = calls.get(msg.call_id);
      if (entry) { entry.card = msg.card; renderCalls(); }
      return;
    }
    case "agent_state": {
      const i = agents.findIndex((a) => a.user_id === msg.agent.user_id);
      if (i >= 0) agents[i] = msg.agent; else agents.push(msg.agent);
      renderAgents();
      return;
    }
    case "agents":
      agents = msg.agents || [];
      renderAgents();
      return;
    case "figures":
      figures = msg.figures;
      renderFigures();
      return;
    case "ticket":
      if (msg.ticket.kind === "callback") loadOverdue();
      return;
    default:
  }
}

function agentName(extension) {
  if (!extension) return "";
  const agent = agents.find((a) => (a.extensions || []).includes(extension));
  return agent ? `${agent.name} (${extension})` : extension;
}

function renderCalls() {
  const body = document.getElementById("live-body");
  const rank = { ringing: 0, setup: 0, held: 1, answered: 2, ended: 3 };
  const sorted = [...calls.values()].sort((a, b) =>
    (rank[a.call.state] ?? 3) - (rank[b.call.state] ?? 3) || (a.call.started_at || "").localeCompare(b.call.started_at || ""));
  body.replaceChildren(...sorted.map(({ call, card }) => {
    const since = call.state === "answered" || call.state === "held" ? call.answered_at || call.started_at : call.started_at;
    const timer = el("span", { class: "timer", dataset: { since } });
    if (call.ended_at) timer.dataset.until = call.ended_at;
    timer.textContent = formatDuration((Date.parse(call.ended_at || "") || Date.now()) / 1000 - Date.parse(since) / 1000);
    const who = call.state === "ringing" || call.state === "setup"
      ? (call.ringing_extensions || []).map(agentName).join(", ")
      : call.agent_extension ? agentName(call.agent_extension) : (call.rang_extensions || []).map(agentName).join(", ");
    const customer = card && card.customer;
    return el("tr", { class: `live-call ${call.state}`, dataset: { callId: call.id } },
      el("td", {}, el("span", { class: `pill ${call.state} ${call.outcome || ""}` }, call.state === "ended" && call.outcome ? t(`outcome_${call.outcome}`) : t(call.state)), " ", el("span", { class: "muted" }, t(call.direction))),
      el("td", {}, timer),
      el("td", {}, el("span", { class: "caller-name" }, callerLabel(call)), " ",
        el("span", { class: "number" }, card ? card.caller_display : (remoteParty(call).withheld ? "" : formatNumber(remoteParty(call).number)))),
      el("td", {}, customer ? `${customer.name}${customer.company ? ` · ${customer.company}` : ""}` : (card && card.unknown ? t("unknown") : "")),
      el("td", {}, who));
  }));
  document.getElementById("live-empty").hidden = calls.size > 0;
  renderAgents(); // agent names in rows depend on the directory, and states on calls
}

function renderAgents() {
  const list = document.getElementById("agents");
  const order = { ringing: 0, on_call: 1, on_hold: 2, available: 3, offline: 4 };
  const sorted = [...agents].sort((a, b) => (order[a.state] ?? 5) - (order[b.state] ?? 5) || a.name.localeCompare(b.name));
  document.getElementById("agents-empty").hidden = sorted.length > 0;
  list.replaceChildren(...sorted.map((a) => el("li", { class: `agent ${a.state}`, dataset: { userId: a.user_id } },
    el("span", { class: "dot", "aria-hidden": "true" }),
    el("span", { class: "name" }, a.name),
    el("span", { class: "muted" }, (a.extensions || []).join(", ")),
    el("span", { class: `pill ${a.state}` }, t(`st_${a.state}`)))));
}

function tile(key, value, sub, warn) {
  return el("div", { class: `tile${warn ? " warn" : ""}`, dataset: { figure: key } },
    el("div", { class: "value" }, value),
    el("div", { class: "label" }, t(`f_${key}`)),
    sub ? el("div", { class: "sub" }, sub) : null);
}

function renderFigures() {
  const tiles = document.getElementById("tiles");
  const f = figures || {
    calls_in: "–", calls_out: "–", answered_rate: null, missed: "–", missed_not_called_back: "–", overdue_callbacks: "–",
    oldest_overdue_due_at: null, average_wait_secs: null, average_duration_secs: null, open_tickets: "–", calls_per_hour: null,
  };
  const rate = f.answered_rate === null || f.answered_rate === undefined ? "–" : `${Math.round(f.answered_rate * 100)} %`;
  tiles.replaceChildren(
    tile("calls_in", f.calls_in),
    tile("calls_out", f.calls_out),
    tile("answered_rate", rate),
    tile("missed", f.missed, null, f.missed > 0),
    tile("missed_not_called_back", f.missed_not_called_back, null, f.missed_not_called_back > 0),
    tile("overdue_callbacks", f.overdue_callbacks, f.oldest_overdue_due_at ? t("oldest", { when: formatTime(f.oldest_overdue_due_at) }) : null, f.overdue_callbacks > 0),
    tile("average_wait", f.average_wait_secs === null ? "–" : formatDuration(f.average_wait_secs)),
    tile("average_duration", f.average_duration_secs === null ? "–" : formatDuration(f.average_duration_secs)),
    tile("open_tickets", f.open_tickets));
  drawChart(f.calls_per_hour || new Array(24).fill(0));
}

function drawChart(perHour) {
  const width = 720, height = 180, left = 28, bottom = 22, top = 12;
  const max = Math.max(1, ...perHour);
  const plotH = height - bottom - top;
  const barW = (width - left) / 24;
  const now = new Date().getHours();
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "per-hour", "aria-label": t("calls_per_hour") });
  const step = max <= 5 ? 1 : Math.ceil(max / 4);
  for (let v = 0; v <= max; v += step) {
    const y = top + plotH - (v / max) * plotH;
    root.append(svg("line", { x1: left, x2: width, y1: y, y2: y, class: "gridline" }));
    root.append(svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, v));
  }
  perHour.forEach((count, hour) => {
    const h = (count / max) * plotH;
    const x = left + hour * barW + 2;
    const bar = svg("rect", { x, y: top + plotH - h, width: barW - 4, height: Math.max(h, 0), rx: 2, class: hour === now ? "bar now" : "bar" });
    bar.append(svg("title", {}, `${hour} h : ${count}`));
    root.append(bar);
    if (count > 0) root.append(svg("text", { x: x + (barW - 4) / 2, y: top + plotH - h - 3, class: "count", "text-anchor": "middle" }, count));
    if (hour % 3 === 0) root.append(svg("text", { x: x + (barW - 4) / 2, y: height - 6, class: "axis", "text-anchor": "middle" }, `${hour}h`));
  });
  document.getElementById("chart").replaceChildren(root);
}

async function loadFigures() {
  try { figures = await api("GET", "/api/kpis"); renderFigures(); } catch { /* the hub will push them */ }
}

async function loadOverdue() {
  let items = [];
  try {
    const page = await api("GET", "/api/tickets?kind=callback&status=open&limit=20");
    items = page.items || [];
  } catch { /* tickets API not there yet */ }
  const due = (tk) => (tk.due_at ? Date.parse(tk.due_at) : Infinity);
  items.sort((a, b) => due(a) - due(b)); // oldest first
  const now = Date.now();
  document.getElementById("overdue").replaceChildren(...items.map((tk) => el("li", { class: `row${due(tk) < now ? " overdue" : ""}`, dataset: { ticketId: tk.id } },
    el("div", { class: "row-main" },
      el("span", { class: "name" }, tk.customer_name || tk.phone_display || tk.phone_e164 || t("unknown")),
      tk.customer_name ? el("span", { class: "number" }, tk.phone_display || tk.phone_e164 || "") : null),
    el("div", { class: "row-sub" },
      due(tk) < now ? el("span", { class: "pill overdue" }, t("overdue")) : null,
      tk.due_at ? el("span", {}, t("due", { when: formatTime(tk.due_at) })) : null,
      tk.attempts > 1 ? el("span", {}, t("attempts", { n: tk.attempts })) : null,
      el("span", { class: "muted" }, tk.assignee_name || t("team"))))));
  document.getElementById("overdue-empty").hidden = items.length > 0;
}

function renderAll() { renderFigures(); renderCalls(); renderAgents(); }

document.documentElement.dataset.locale = locale;
startTicking();
renderAll();
loadOverdue();
loadFigures();
setInterval(loadOverdue, 60000);
connectHub({ message: onMessage, state: showConnection });
