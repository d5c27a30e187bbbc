// What both pages share: the hub socket (seq, resync, ping, backoff), JSON
// calls to the API, a small element builder and formatting.
// The builder only ever sets textContent: outside text can never become HTML.

import { t, locale, toggleLang } from "./i18n.js";

/** Builds an element: el("li", {class: "x", dataset: {id: 1}}, "text", child). Strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** JSON request to the API; throws ApiError; sends to the login page on 401. */
export async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/api/me") toLogin();
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

export function toLogin() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.href = `/login.html?next=${next}`;
}

/** The signed-in user, or null when the server has no auth routes yet. Sends to login on 401. */
export async function currentUser() {
  try {
    return await api("GET", "/api/me");
  } catch (error) {
    if (error.status === 401) { toLogin(); throw error; }
    return null;
  }
}

/** Wires the common header: language toggle, logout, user name. */
export function setupHeader(user) {
  const toggle = document.getElementById("lang-toggle");
  if (toggle) toggle.addEventListener("click", toggleLang);
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      try { await api("POST", "/api/logout"); } catch { /* already gone */ }
      location.href = "/login.html";
    });
  }
  const who = document.getElementById("who");
  if (who && user) who.textContent = user.display_name || user.login || "";
}

const BACKOFF = [1000, 2000, 5000, 10000];
const SILENCE_MS = 70000;

/**
 * The hub socket. `handlers.message(msg)` gets every routed message (snapshot
 * included), `handlers.state(name)` gets "connecting" | "online" | "offline".
 */
export function connectHub(handlers) {
  let socket = null;
  let lastSeq = null;
  let attempt = 0;
  let silenceTimer = null;
  let stopped = false;

  const setState = (name) => handlers.state && handlers.state(name);
  const send = (msg) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg));
  };
  const resync = () => { lastSeq = null; send({ type: "resync" }); };
  const armSilence = () => {
    clearTimeout(silenceTimer);
    silenceTimer = setTimeout(() => { if (socket) socket.close(); }, SILENCE_MS);
  };

  function open() {
    setState("connecting");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    socket = new WebSocket(url);
    socket.addEventListener("open", () => { attempt = 0; lastSeq = null; armSilence(); });
    socket.addEventListener("message", (event) => {
      armSilence();
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (!msg || typeof msg !== "object") return;
      if (msg.v !== undefined && msg.v !== 1) { location.reload(); return; }
      switch (msg.type) {
        case "ping":
          send({ type: "pong" });
          if (lastSeq !== null && msg.seq > lastSeq) resync();
          return;
        case "pong":
        case "error":
          return;
        case "snapshot":
          lastSeq = msg.seq;
          setState("online");
          handlers.message(msg);
          return;
        default:
          if (lastSeq === null) return; // waiting for a snapshot
          if (msg.seq !== lastSeq + 1) { resync(); return; }
          lastSeq = msg.seq;
          handlers.message(msg);
      }
    });
    socket.addEventListener("close", async () => {
      clearTimeout(silenceTimer);
      socket = null;
      setState("offline");
      if (stopped) return;
      // A refused upgrade looks like a close: check the session before retrying.
      try {
        const response = await fetch("/api/me", { credentials: "same-origin" });
        if (response.status === 401) { toLogin(); return; }
      } catch { /* server down: retry */ }
      const delay = BACKOFF[Math.min(attempt, BACKOFF.length - 1)];
      attempt += 1;
      setTimeout(open, delay);
    });
  }

  open();
  return { resync, send, stop() { stopped = true; if (socket) socket.close(); } };
}

/** Shows the connection state in #connection (class names kept from the first page: .state.online/.offline). */
export function showConnection(name) {
  const node = document.getElementById("connection");
  if (!node) return;
  node.textContent = t(name);
  node.className = `state ${name}`;
}

export function formatDuration(secs) {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return "–";
  const s = Math.max(0, Math.round(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

export function secondsSince(iso, until) {
  const start = Date.parse(iso);
  if (!Number.isFinite(start)) return null;
  const end = until ? Date.parse(until) : Date.now();
  return (end - start) / 1000;
}

export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString(locale, { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" });
}

/** Updates every [data-since] element with the time elapsed (ticking durations). */
export function startTicking() {
  const tick = () => {
    for (const node of document.querySelectorAll("[data-since]")) {
      node.textContent = formatDuration(secondsSince(node.dataset.since, node.dataset.until || null));
    }
  };
  tick();
  return setInterval(tick, 1000);
}

/** A number for people when the server did not format it: French numbers as 06 12 34 56 78. */
export function formatNumber(number) {
  if (!number) return "";
  const french = /^\+33([1-9])(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(number);
  return french ? `0${french[1]} ${french.slice(2).join(" ")}` : number;
}

/** The caller's name for people: withheld, signalled name, or number. */
export function callerLabel(call) {
  const caller = remoteParty(call);
  if (caller.withheld) return t("withheld");
  return caller.name || caller.number || t("unknown");
}

/** The party on the far side: the callee of an outbound call, else the caller. */
export function remoteParty(call) {
  if (!call) return {};
  return (call.direction === "outbound" ? call.callee : call.caller) || {};
}
