// The agent page: the pop card while the phone rings, the note/reason/priority
// form during and after the call, "Mes rappels", ticket search and the
// customer file. Outside text only ever reaches the page through textContent
// (see el() in common.js).

import { t, applyI18n } from "./i18n.js";
import {
  el, api, currentUser, setupHeader, connectHub, showConnection, formatDuration,
  formatTime, startTicking, callerLabel, formatNumber, secondsSince, remoteParty,
} from "./common.js";

applyI18n();

const REASONS = ["info", "order", "complaint", "billing", "support", "other"];
const PRIORITIES = ["low", "normal", "high", "urgent"];

/** call id → {call, card, withdrawn, node, ended} */
const entries = new Map();
/** call id → ticket (from `ticket` messages) */
const ticketsByCall = new Map();
let myExtensions = [];
let amiAvailable = true;
let callbacks = [];

const user = await currentUser().catch(() => null);
setupHeader(user);
if (user && (user.role === "supervisor" || user.role === "admin")) document.getElementById("board-link").hidden = false;

// ---------- notifications (permission asked on a user gesture only) ----------

function askNotificationOnce() {
  if (!("Notification" in window) || Notification.permission !== "default") return;
  Notification.requestPermission().catch(() => {});
}
document.addEventListener("click", askNotificationOnce, { once: true });
document.addEventListener("keydown", askNotificationOnce, { once: true });

function notify(entry) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const customer = entry.card && entry.card.customer;
  const body = [customer ? customer.name : callerLabel(entry.call), entry.card ? entry.card.caller_display : ""]
    .filter(Boolean).join(" – ");
  try {
    const n = new Notification(t("notif_title"), { body, tag: entry.call.id });
    n.onclick = () => { window.focus(); n.close(); };
  } catch { /* some browsers only allow notifications from a service worker */ }
}

// ---------- hub messages ----------

function ringsHere(call) {
  return (call.ringing_extensions || []).some((e) => myExtensions.includes(e));
}

function upsert(call, card) {
  let entry = entries.get(call.id);
  if (!entry) {
    entry = { call, card: card || null, withdrawn: null, node: null, dismissed: false };
    entries.set(call.id, entry);
  } else {
    entry.call = call;
    if (card) entry.card = card;
  }
  return entry;
}

function onMessage(msg) {
  switch (msg.type) {
    case "snapshot": {
      myExtensions = msg.extensions || [];
      for (const { call, card } of msg.calls || []) if (!card) setTimeout(() => { const e = entries.get(call.id); if (e) lookupCard(e); }, 300);
      // Keep cards that ended or were withdrawn (Claire may still be typing); replace the live ones.
      const live = new Set();
      for (const { call, card } of msg.calls || []) {
        upsert(call, card);
        live.add(call.id);
      }
      for (const [id, entry] of entries) {
        if (!live.has(id) && entry.call.state !== "ended" && !entry.withdrawn) entry.call = { ...entry.call, state: "ended" };
      }
      setCallbacksCount(msg.open_callbacks);
      break;
    }
    case "pop": {
      const isNew = !entries.has(msg.call.id);
      const entry = upsert(msg.call, msg.card);
      entry.withdrawn = null;
      entry.dismissed = false;
      if (isNew) notify(entry);
      if (!entry.card) setTimeout(() => lookupCard(entry), 300);
      break;
    }
    case "call": {
      const entry = entries.get(msg.call.id);
      if (entry) entry.call = msg.call;
      else if (msg.call.state !== "ended" && (ringsHere(msg.call) || myExtensions.includes(msg.call.agent_extension))) {
        const added = upsert(msg.call, null);
        setTimeout(() => lookupCard(added), 300);
      }
      if (msg.event === "ended") loadCallbacks();
      break;
    }
    case "withdrawn": {
      const entry = entries.get(msg.call_id);
      if (entry) { entry.withdrawn = msg; entry.withdrawnAt = Date.now(); }
      break;
    }
    case "card": {
      const entry = entries.get(msg.call_id);
      if (entry) { entry.card = msg.card; entry.cardChanged = true; }
      break;
    }
    case "ticket": {
      if (msg.ticket.call_id) ticketsByCall.set(msg.ticket.call_id, msg.ticket);
      if (msg.ticket.kind === "callback") loadCallbacks();
      break;
    }
    case "callbacks":
      setCallbacksCount(msg.open);
      loadCallbacks();
      break;
    default:
      return;
  }
  render();
}

// ---------- cards ----------

/** When the server has not sent a card (yet), builds a plain one from the number lookup. A server card always wins. */
async function lookupCard(entry) {
  const caller = remoteParty(entry.call);
  if (entry.card || entry.lookedUp || caller.withheld || !caller.number) return;
  entry.lookedUp = true;
  try {
    const answer = await api("GET", `/api/customers/lookup?number=${encodeURIComponent(caller.number)}`);
    if (entry.card || !answer) return;
    const [first, ...others] = answer.matches || [];
    entry.card = {
      caller_display: answer.display || caller.number,
      customer: first ? { open_tickets: [], recent: [], ...first.customer } : null,
      other_matches: others.map((m) => ({ id: m.customer.id, name: m.customer.name, company: m.customer.company })),
      unknown: !first,
    };
    entry.cardChanged = true;
    render();
  } catch { /* the server's card may still come */ }
}

function sortedEntries() {
  const rank = (e) => (e.withdrawn ? 3 : { ringing: 0, setup: 0, answered: 1, held: 1, ended: 2 }[e.call.state] ?? 2);
  return [...entries.values()]
    .filter((e) => !e.dismissed)
    .sort((a, b) => rank(a) - rank(b) || (b.call.started_at || "").localeCompare(a.call.started_at || ""));
}

function activeEntry() {
  return sortedEntries()[0] || null;
}

function render() {
  const list = document.getElementById("calls");
  const shown = sortedEntries();
  for (const entry of shown) {
    if (!entry.node) entry.node = buildCard(entry);
    updateCard(entry);
  }
  // Reorder without recreating nodes, and only when the order changed: moving
  // a node blurs it, and Claire's next keystrokes would land on the page.
  const wanted = shown.map((e) => e.node);
  const current = [...list.children];
  if (wanted.length !== current.length || wanted.some((node, i) => node !== current[i])) {
    const focused = document.activeElement;
    const selection = focused && "selectionStart" in focused ? [focused.selectionStart, focused.selectionEnd] : null;
    list.replaceChildren(...wanted);
    if (focused && focused !== document.activeElement && document.contains(focused)) {
      focused.focus({ preventScroll: true });
      if (selection) { try { focused.setSelectionRange(...selection); } catch { /* not a text field */ } }
    }
  }
  document.getElementById("empty").hidden = shown.length > 0;
}

function stateLabel(entry) {
  if (entry.withdrawn) {
    const w = entry.withdrawn;
    if (w.answered_by || w.answered_by_name) {
      const who = w.answered_by_name ? `${w.answered_by_name}${w.answered_by ? ` (${w.answered_by})` : ""}` : w.answered_by;
      return t("taken_by", { who });
    }
    return t("stopped_ringing");
  }
  const { state, outcome } = entry.call;
  return state === "ended" && outcome ? `${t("ended")} · ${t(`outcome_${outcome}`)}` : t(state);
}

function updateCard(entry) {
  const { call, card, node } = entry;
  const customer = card && card.customer;
  node.className = `card ${entry.withdrawn ? "withdrawn" : call.state}${call.outcome ? ` ${call.outcome}` : ""}`;
  node.dataset.callId = call.id;
  node.querySelector(".name").textContent = customer ? customer.name : callerLabel(call);
  const party = remoteParty(call);
  const number = card ? card.caller_display : party.withheld ? "" : formatNumber(party.number);
  node.querySelector(".number").textContent = number || "";
  // The signalled display name, when it differs from the customer's: shown as text, as sent.
  const signalled = party.name && customer && party.name !== customer.name ? party.name : "";
  const shown = node.querySelector(".signalled");
  shown.hidden = !signalled;
  shown.querySelector(".signalled-name").textContent = signalled;
  node.querySelector(".state-label").textContent = stateLabel(entry);
  const exts = call.state === "ringing" ? (call.ringing_extensions || []).filter((e) => myExtensions.includes(e)) : [call.agent_extension].filter(Boolean);
  node.querySelector(".ext").textContent = exts.length ? `${t("ext")} ${exts.join(", ")}` : "";
  const timer = node.querySelector(".timer");
  const since = call.answered_at || call.started_at;
  if (since) {
    timer.dataset.since = since;
    if (call.ended_at) timer.dataset.until = call.ended_at; else delete timer.dataset.until;
    timer.textContent = formatDuration(secondsSince(since, call.ended_at));
  }
  const ticket = ticketsByCall.get(call.id);
  node.querySelector(".ticket-ref").textContent = ticket ? `${t("ticket")} #${ticket.id}` : "";
  if (entry.cardChanged || !node.dataset.built) {
    node.querySelector(".customer").replaceChildren(...customerBlock(entry));
    node.dataset.built = "1";
    entry.cardChanged = false;
  }
}

function buildCard(entry) {
  const id = entry.call.id;
  const noteId = `note-${id}`;
  const form = el("form", { class: "ticket-form", onsubmit: (e) => { e.preventDefault(); save(entry); } },
    el("label", { for: noteId, class: "field-label" }, t("note")),
    el("textarea", { id: noteId, name: "note", rows: 3, class: "note", placeholder: t("note_placeholder") }),
    el("div", { class: "form-row" },
      el("label", { class: "field" }, el("span", {}, t("reason")),
        el("select", { name: "reason" }, el("option", { value: "" }, "—"),
          REASONS.map((r) => el("option", { value: r }, t(`reason_${r}`))))),
      el("label", { class: "field" }, el("span", {}, t("priority")),
        el("select", { name: "priority", onchange: (e) => { e.target.form.dataset.priorityTouched = "1"; } },
          PRIORITIES.map((p) => el("option", { value: p, selected: p === "normal" }, t(`prio_${p}`))))),
      el("label", { class: "field" }, el("span", {}, t("follow_up")), el("input", { type: "datetime-local", name: "due" })),
    ),
    el("div", { class: "form-row actions" },
      el("label", { class: "check" }, el("input", { type: "checkbox", name: "close" }), " ", t("close_ticket"), el("kbd", {}, "F")),
      el("span", { class: "spacer" }),
      el("span", { class: "save-status", role: "status", "aria-live": "polite" }),
      el("button", { type: "button", class: "secondary dismiss", onclick: () => dismiss(entry) }, t("dismiss"), el("kbd", {}, "Esc")),
      el("button", { type: "submit", class: "primary" }, t("save"), el("kbd", {}, "Ctrl+↵")),
    ),
  );
  return el("li", { class: "card", dataset: { callId: id } },
    el("div", { class: "card-head" },
      el("div", { class: "who" }, el("span", { class: "name" }), el("span", { class: "number" })),
      el("div", { class: "what" },
        el("span", { class: "state-label" }), el("span", { class: "ext" }), el("span", { class: "timer" }),
        el("span", { class: "ticket-ref" })),
      el("div", { class: "signalled", hidden: true }, el("span", {}, t("shown_as")), " ", el("span", { class: "signalled-name" }))),
    el("div", { class: "customer" }),
    form);
}

function section(title, ...content) {
  return el("div", { class: "card-section" }, el("h3", {}, title), ...content);
}

function historyItem(item) {
  if (item.kind === "ticket") {
    return el("li", {}, el("span", { class: "when" }, formatTime(item.at)), " ",
      el("span", {}, item.subject || t("kind_manual")), " ", el("span", { class: `pill ${item.status}` }, t(`status_${item.status}`)));
  }
  const parts = [t(item.direction || "inbound")];
  if (item.outcome) parts.push(t(`outcome_${item.outcome}`));
  if (item.duration_secs) parts.push(formatDuration(item.duration_secs));
  if (item.agent_extension) parts.push(`${t("ext")} ${item.agent_extension}`);
  return el("li", {}, el("span", { class: "when" }, formatTime(item.at)), " ", el("span", {}, parts.join(" · ")));
}

function customerBlock(entry) {
  const card = entry.card;
  if (!card) return [];
  const customer = card.customer;
  if (!customer) return card.unknown && !entry.call.caller?.withheld ? [unknownForm(entry)] : [];
  const parts = [];
  const facts = el("div", { class: "facts" });
  if (customer.company) facts.append(el("span", { class: "company" }, customer.company));
  for (const tag of customer.tags || []) facts.append(el("span", { class: "tag" }, tag));
  facts.append(el("button", { type: "button", class: "link", onclick: () => openCustomer(customer.id) }, t("open_file")));
  // Links to Odoo: URLs built by the server from its configuration and ids.
  for (const link of customer.links || []) {
    const label = link.kind === "odoo_ticket" ? t("open_ticket_in_odoo", { id: link.ticket_id }) : t("open_in_odoo");
    facts.append(el("a", { class: "link external", href: link.url, target: "_blank", rel: "noopener noreferrer" }, label));
  }
  parts.push(facts);
  if (customer.notes) parts.push(el("p", { class: "customer-notes" }, customer.notes));
  const open = customer.open_tickets || [];
  parts.push(section(t("open_tickets"), open.length
    ? el("ul", { class: "mini" }, open.map((tk) => el("li", {}, el("span", { class: `pill ${tk.priority}` }, t(`prio_${tk.priority}`)), " ", tk.subject || `#${tk.id}`)))
    : el("p", { class: "muted" }, t("none"))));
  const recent = (customer.recent || []).filter((item) => item.call_id !== entry.call.id); // not the call on screen
  if (recent.length) parts.push(section(t("recent"), el("ul", { class: "mini" }, recent.slice(0, 5).map(historyItem))));
  if ((card.other_matches || []).length) {
    parts.push(section(t("other_matches"), el("ul", { class: "mini" }, card.other_matches.map((m) =>
      el("li", {}, el("button", { type: "button", class: "link", onclick: () => openCustomer(m.id) }, m.name), m.company ? ` · ${m.company}` : "")))));
  }
  return parts;
}

function unknownForm(entry) {
  const number = remoteParty(entry.call).number;
  const status = el("p", { class: "save-status", role: "status" });
  const results = el("ul", { class: "mini" });
  const nameId = `new-name-${entry.call.id}`;
  const companyId = `new-company-${entry.call.id}`;
  const searchId = `attach-q-${entry.call.id}`;
  const applyCustomer = (customer) => {
    entry.card = { ...(entry.card || {}), customer: { open_tickets: [], recent: [], tags: [], ...customer }, unknown: false };
    entry.cardChanged = true;
    render();
  };
  const create = el("form", { class: "inline-form", onsubmit: async (e) => {
    e.preventDefault();
    const name = e.target.elements.name.value.trim();
    if (!name) { e.target.elements.name.focus(); return; }
    const company = e.target.elements.company.value.trim() || null;
    try {
      const customer = await api("POST", "/api/customers", { name, company, phones: number ? [{ number }] : [] });
      status.textContent = t("created");
      applyCustomer(customer);
    } catch (error) { status.textContent = t("save_failed", { why: error.message }); }
  } },
  el("label", { for: nameId, class: "visually-hidden" }, t("name")),
  el("input", { id: nameId, name: "name", placeholder: t("name"), autocomplete: "off", required: true }),
  el("label", { for: companyId, class: "visually-hidden" }, t("company")),
  el("input", { id: companyId, name: "company", placeholder: t("company"), autocomplete: "off" }),
  el("button", { type: "submit" }, t("create")));
  const attach = el("form", { class: "inline-form", onsubmit: async (e) => {
    e.preventDefault();
    const q = e.target.elements.q.value.trim();
    if (!q) return;
    try {
      const page = await api("GET", `/api/customers?q=${encodeURIComponent(q)}&limit=5`);
      results.replaceChildren(...(page.items || []).map((c) => el("li", {},
        el("span", {}, c.name), c.company ? ` · ${c.company}` : "", " ",
        el("button", { type: "button", class: "small", onclick: async () => {
          try {
            const customer = await api("POST", `/api/customers/${c.id}/phones`, { number, label: null });
            status.textContent = t("attached");
            applyCustomer(customer || c);
          } catch (error) { status.textContent = t("save_failed", { why: error.message }); }
        } }, t("attach")))));
      if (!(page.items || []).length) results.replaceChildren(el("li", { class: "muted" }, t("no_results")));
    } catch (error) { status.textContent = t("save_failed", { why: error.message }); }
  } },
  el("label", { for: searchId, class: "visually-hidden" }, t("search_customer")),
  el("input", { id: searchId, name: "q", type: "search", placeholder: t("search_customer"), autocomplete: "off" }),
  el("button", { type: "submit" }, t("search_go")));
  const signalled = remoteParty(entry.call).name;
  if (signalled) create.elements.name.value = signalled; // a starting point she can correct; a value, never markup
  return el("div", { class: "unknown-box" },
    el("p", { class: "unknown-label" }, t("unknown")),
    el("h3", {}, t("create_customer")), create,
    el("p", { class: "muted" }, t("attach_to")), attach, results, status);
}

function dismiss(entry) {
  if (!entry) return;
  entry.dismissed = true;
  if (entry.call.state === "ended" || entry.withdrawn) entries.delete(entry.call.id);
  render();
  const next = activeEntry();
  if (next) next.node.querySelector(".note").focus();
}

/**
 * Saves the card on the call's ticket: one request, from the first ring on.
 * While the phone rings the call has no ticket yet; the server holds what she
 * typed and puts it on the ticket the call makes (or the callback it joins).
 * Only what she set is sent, so a save never resets a field she did not touch.
 */
async function save(entry) {
  const form = entry.node.querySelector(".ticket-form");
  const status = form.querySelector(".save-status");
  const fields = form.elements;
  const body = {};
  const note = fields.note.value.trim();
  if (note) body.note = note;
  if (fields.reason.value) body.reason = fields.reason.value;
  if (form.dataset.priorityTouched) body.priority = fields.priority.value;
  if (fields.close.checked) body.status = "closed";
  if (fields.due.value) {
    const due = new Date(fields.due.value);
    if (!Number.isNaN(due.getTime())) body.due_at = due.toISOString();
  }
  if (!Object.keys(body).length) {
    status.textContent = t("nothing_to_save");
    fields.note.focus();
    return;
  }
  status.textContent = "…";
  try {
    const answer = await api("POST", `/api/calls/${encodeURIComponent(entry.call.id)}/ticket`, body);
    if (answer && answer.state === "applied" && answer.ticket) ticketsByCall.set(entry.call.id, answer.ticket);
    if (fields.note.value.trim() === note) fields.note.value = "";
    status.textContent = answer && answer.state === "held" ? t("saved_held") : t("saved");
    entry.node.classList.add("saved");
    entry.savedAt = Date.now();
    render();
  } catch (error) {
    status.textContent = t("save_failed", { why: error.message });
  }
}

// ---------- Mes rappels ----------

function setCallbacksCount(n) {
  if (typeof n === "number") document.getElementById("callbacks-count").textContent = String(n);
}

async function loadCallbacks() {
  const answers = await Promise.allSettled([
    api("GET", "/api/tickets?kind=callback&status=open&assignee=me&limit=100"),
    api("GET", "/api/tickets?kind=callback&status=open&assignee=group&limit=100"),
  ]);
  const byId = new Map();
  for (const answer of answers) {
    if (answer.status !== "fulfilled" || !answer.value) continue;
    for (const ticket of answer.value.items || []) byId.set(ticket.id, ticket);
  }
  const now = Date.now();
  const due = (tk) => (tk.due_at ? Date.parse(tk.due_at) : Infinity);
  callbacks = [...byId.values()].sort((a, b) => {
    const ao = due(a) < now ? 0 : 1;
    const bo = due(b) < now ? 0 : 1;
    return ao - bo || due(a) - due(b);
  });
  renderCallbacks();
}

function renderCallbacks() {
  const list = document.getElementById("callbacks-list");
  const now = Date.now();
  list.replaceChildren(...callbacks.map((tk) => {
    const overdue = tk.due_at && Date.parse(tk.due_at) < now;
    const number = tk.phone_e164 || "";
    const shown = tk.phone_display || number;
    const row = el("li", { class: `row callback${overdue ? " overdue" : ""}`, dataset: { ticketId: tk.id }, tabindex: 0 },
      el("div", { class: "row-main" },
        el("span", { class: "name" }, tk.customer_name || shown || t("unknown")),
        tk.customer_name && shown ? el("span", { class: "number" }, shown) : null,
        tk.customer_id ? el("button", { type: "button", class: "link", onclick: () => openCustomer(tk.customer_id) }, t("open_file")) : null),
      el("div", { class: "row-sub" },
        overdue ? el("span", { class: "pill overdue" }, t("overdue")) : null,
        tk.due_at ? el("span", {}, t("due", { when: formatTime(tk.due_at) })) : null,
        tk.attempts > 1 ? el("span", {}, t("attempts", { n: tk.attempts })) : null,
        el("span", { class: `pill ${tk.priority}` }, t(`prio_${tk.priority}`)),
        tk.assignee_user_id === null || tk.assignee_user_id === undefined ? el("span", { class: "muted" }, t("team")) : null),
      el("div", { class: "row-actions" },
        number ? el("button", { type: "button", class: "primary small call-button", hidden: !amiAvailable, onclick: (e) => originate(number, e.currentTarget) }, t("call_back")) : null,
        number ? el("a", { href: `tel:${number}`, class: "tel" }, shown) : null,
        el("button", { type: "button", class: "secondary small", onclick: () => closeCallback(tk) }, t("done"))));
    return row;
  }));
  document.getElementById("callbacks-empty").hidden = callbacks.length > 0;
  document.getElementById("no-ami").hidden = amiAvailable;
}

async function originate(number, button) {
  button.disabled = true;
  try {
    await api("POST", "/api/calls/originate", { number });
    button.textContent = t("calling");
  } catch (error) {
    if (error.status === 503 || error.status === 404 || error.status === 405 || error.code === "no_ami") {
      amiAvailable = false;
      renderCallbacks();
    } else {
      button.disabled = false;
    }
  }
}

async function closeCallback(ticket) {
  try {
    await api("PATCH", `/api/tickets/${ticket.id}`, { status: "closed" });
    callbacks = callbacks.filter((tk) => tk.id !== ticket.id);
    renderCallbacks();
  } catch { /* the list reloads on the next ticket message */ }
}

// ---------- ticket search ----------

/** Whether the server lets this user change `tk`: agents change only the tickets
 * assigned to them or to nobody (docs/authorization.md); the others get no button. */
function mayChange(tk) {
  if (!user || user.role !== "agent") return true;
  return tk.assignee_user_id === null || tk.assignee_user_id === undefined || tk.assignee_user_id === user.id;
}

function ticketRow(tk) {
  const pill = el("span", { class: `pill ${tk.status}` }, t(`status_${tk.status}`));
  const toggle = mayChange(tk) ? el("button", { type: "button", class: "link status-toggle" }) : null;
  const show = (status) => {
    pill.className = `pill ${status}`;
    pill.textContent = t(`status_${status}`);
    if (toggle) toggle.textContent = status === "closed" ? t("reopen") : t("close_short");
  };
  show(tk.status);
  // A ticket closed too soon (the customer calls back about it) is reopened here.
  if (toggle) toggle.addEventListener("click", async () => {
    const wanted = tk.status === "closed" ? "open" : "closed";
    toggle.disabled = true;
    try {
      const ticket = await api("PATCH", `/api/tickets/${tk.id}`, { status: wanted });
      tk.status = ticket && ticket.status ? ticket.status : wanted;
      show(tk.status);
      if (tk.kind === "callback") loadCallbacks();
    } catch (error) {
      toggle.textContent = t("save_failed", { why: error.message });
    } finally {
      toggle.disabled = false;
    }
  });
  return el("li", { class: "row", dataset: { ticketId: String(tk.id) } },
    el("div", { class: "row-main" },
      el("span", { class: "name" }, tk.customer_name || tk.phone_display || tk.phone_e164 || t("unknown")),
      el("span", { class: "muted" }, `#${tk.id} · ${t(`kind_${tk.kind}`)}`),
      pill, toggle),
    el("div", { class: "row-sub" },
      tk.subject ? el("span", {}, tk.subject) : null,
      tk.reason ? el("span", {}, t(`reason_${tk.reason}`)) : null,
      el("span", { class: "when" }, formatTime(tk.created_at || tk.updated_at)),
      tk.last_call && tk.last_call.duration_secs !== null && tk.last_call.duration_secs !== undefined
        ? el("span", { class: "duration" }, formatDuration(tk.last_call.duration_secs)) : null,
      tk.customer_id ? el("button", { type: "button", class: "link open-file", onclick: () => openCustomer(tk.customer_id) }, t("open_file")) : null));
}

/** A number typed the French way (06 12 34 56 78, 06.12…) searched as E.164; anything else as typed. */
function searchTerm(text) {
  const compact = text.replace(/[\s.\-()]/g, "");
  if (/^0[1-9]\d{8}$/.test(compact)) return `+33${compact.slice(1)}`;
  if (/^0033[1-9]\d{8}$/.test(compact)) return `+${compact.slice(2)}`;
  if (/^\+\d{6,15}$/.test(compact)) return compact;
  return text;
}

document.getElementById("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = searchTerm(document.getElementById("search-q").value.trim());
  const results = document.getElementById("search-results");
  try {
    const page = await api("GET", `/api/tickets?q=${encodeURIComponent(q)}&limit=30`);
    const items = page.items || [];
    results.replaceChildren(...(items.length ? items.map(ticketRow) : [el("li", { class: "muted" }, t("no_results"))]));
  } catch (error) {
    results.replaceChildren(el("li", { class: "muted" }, `${t("error")} : ${error.message}`));
  }
});

// ---------- customer file ----------

async function openCustomer(id) {
  const dialog = document.getElementById("customer-file");
  const body = document.getElementById("file-body");
  body.replaceChildren(el("p", { class: "muted" }, "…"));
  if (!dialog.open) dialog.showModal();
  try {
    const customer = await api("GET", `/api/customers/${id}`);
    const [tickets, ...callPages] = await Promise.allSettled([
      api("GET", `/api/tickets?customer_id=${id}&limit=100`),
      ...(customer.phones || []).map((p) => api("GET", `/api/calls?number=${encodeURIComponent(p.e164 || p.raw)}&limit=100`)),
    ]);
    const calls = callPages.flatMap((p) => (p.status === "fulfilled" && p.value ? p.value.items || [] : []));
    calls.sort((a, b) => (b.started_at || "").localeCompare(a.started_at || ""));
    const facts = el("dl", { class: "facts-list" },
      el("dt", {}, t("name")), el("dd", {}, customer.name),
      customer.company ? [el("dt", {}, t("company")), el("dd", {}, customer.company)] : null,
      (customer.tags || []).length ? [el("dt", {}, t("tags")), el("dd", {}, customer.tags.map((tag) => el("span", { class: "tag" }, tag)))] : null,
      (customer.phones || []).map((p) => [el("dt", {}, p.label || t("phone")), el("dd", {}, el("a", { href: `tel:${p.e164 || p.raw}` }, p.raw))]),
      customer.email ? [el("dt", {}, "E-mail"), el("dd", {}, customer.email)] : null,
      customer.notes ? [el("dt", {}, t("notes")), el("dd", { class: "customer-notes" }, customer.notes)] : null);
    const ticketItems = tickets.status === "fulfilled" && tickets.value ? tickets.value.items || [] : [];
    body.replaceChildren(facts,
      section(t("tickets"), ticketItems.length ? el("ul", { class: "rows" }, ticketItems.map(ticketRow)) : el("p", { class: "muted" }, t("none"))),
      section(t("calls"), calls.length ? el("ul", { class: "mini" }, calls.map((c) => el("li", {},
        el("span", { class: "when" }, formatTime(c.started_at)), " ",
        `${t(c.direction || "inbound")} · ${c.outcome ? t(`outcome_${c.outcome}`) : ""}`,
        c.duration_secs ? ` · ${formatDuration(c.duration_secs)}` : "",
        c.agent_extension ? ` · ${t("ext")} ${c.agent_extension}` : ""))) : el("p", { class: "muted" }, t("none"))));
  } catch (error) {
    body.replaceChildren(el("p", { class: "muted" }, `${t("error")} : ${error.message}`));
  }
}
document.getElementById("file-close").addEventListener("click", () => document.getElementById("customer-file").close());

// ---------- keyboard ----------

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (e) => {
  if (document.getElementById("customer-file").open) return; // the dialog handles Esc itself
  const entry = activeEntry();
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    const card = e.target instanceof Element ? e.target.closest(".card") : null;
    const target = card ? entries.get(card.dataset.callId) : entry;
    if (target) { e.preventDefault(); save(target); }
    return;
  }
  if (e.key === "Escape") {
    if (typing(e.target)) { e.target.blur(); return; }
    if (entry) { e.preventDefault(); dismiss(entry); }
    return;
  }
  if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === "n" && entry) { e.preventDefault(); entry.node.querySelector(".note").focus(); }
  else if (key === "f" && entry) {
    e.preventDefault();
    const box = entry.node.querySelector("input[name=close]");
    box.checked = !box.checked;
  } else if (key === "r") { e.preventDefault(); const first = document.querySelector("#callbacks-list li"); (first || document.getElementById("callbacks-title")).focus?.(); document.getElementById("callbacks").scrollIntoView(); }
  else if (key === "/") { e.preventDefault(); document.getElementById("search-q").focus(); }
});

// ---------- tidying ----------

// A day of calls must not pile up: a card someone else took leaves after a
// minute, a finished card leaves a little after it was saved — never while
// Claire is typing in it or has unsaved text in its note.
function sweep() {
  const now = Date.now();
  let changed = false;
  for (const [id, entry] of entries) {
    const node = entry.node;
    if (node && (node.contains(document.activeElement) || node.querySelector(".note").value.trim())) continue;
    const takenLongAgo = entry.withdrawn && now - entry.withdrawnAt > 60000 && entry.call.agent_extension && !myExtensions.includes(entry.call.agent_extension);
    // Counted from the end too: a note saved while it rang must not make the card leave as the call ends.
    const savedAndDone = entry.call.state === "ended" && entry.savedAt
      && now - Math.max(entry.savedAt, Date.parse(entry.call.ended_at || "") || 0) > 20000;
    if (takenLongAgo || savedAndDone) { entries.delete(id); changed = true; }
  }
  if (changed) render();
}
setInterval(sweep, 5000);

// ---------- start ----------

startTicking();
setInterval(renderCallbacks, 60000); // overdue flags move with time
render();
loadCallbacks();
connectHub({ message: onMessage, state: showConnection });
