// First live pop: lists calls from /api/calls/live and follows /ws.
// Everything that comes from outside (display names, numbers) goes through
// textContent, never innerHTML: a caller chooses their own display name.
"use strict";

const TEXT = {
  fr: {
    offline: "Hors ligne", online: "Connecté", no_calls: "Aucun appel en cours.",
    unknown: "Appelant inconnu", withheld: "Numéro masqué",
    setup: "Appel", ringing: "Sonne", answered: "En ligne", held: "En attente", ended: "Terminé",
    on: "poste",
  },
  en: {
    offline: "Offline", online: "Connected", no_calls: "No call right now.",
    unknown: "Unknown caller", withheld: "Number withheld",
    setup: "Calling", ringing: "Ringing", answered: "Talking", held: "On hold", ended: "Ended",
    on: "ext.",
  },
};
const lang = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "fr";
const t = (key) => TEXT[lang][key] ?? key;
document.documentElement.lang = lang;
for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);

const calls = new Map();

function render() {
  const list = document.getElementById("calls");
  const template = document.getElementById("call-card");
  list.replaceChildren();
  const sorted = [...calls.values()].sort((a, b) => a.started_at.localeCompare(b.started_at));
  for (const call of sorted) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.classList.add(call.state);
    card.dataset.callId = call.id;
    const caller = call.caller || {};
    card.querySelector(".name").textContent = caller.withheld ? t("withheld") : (caller.name || t("unknown"));
    card.querySelector(".number").textContent = caller.withheld ? "" : (caller.number || "");
    card.querySelector(".state-label").textContent = t(call.state);
    const exts = call.state === "ringing" ? call.ringing_extensions : [call.agent_extension].filter(Boolean);
    card.querySelector(".ext").textContent = exts.length ? `${t("on")} ${exts.join(", ")}` : "";
    list.append(card);
  }
  document.getElementById("empty").hidden = calls.size > 0;
}

async function reload() {
  const response = await fetch("/api/calls/live");
  if (!response.ok) return;
  calls.clear();
  for (const call of await response.json()) calls.set(call.id, call);
  render();
}

// Applies one event to the local copy; mirrors the server's live table.
function apply(event) {
  if (event.type === "call_started") {
    calls.set(event.call_id, {
      id: event.call_id, state: "setup", direction: event.direction, caller: event.caller,
      callee: event.callee, ringing_extensions: [], agent_extension: event.direction === "inbound" ? null : event.caller.number,
      started_at: event.at,
    });
    return;
  }
  const call = calls.get(event.call_id);
  if (!call) return;
  switch (event.type) {
    case "ringing":
      if (!call.ringing_extensions.includes(event.extension)) call.ringing_extensions.push(event.extension);
      if (call.state === "setup") call.state = "ringing";
      break;
    case "ringing_stopped":
      call.ringing_extensions = call.ringing_extensions.filter((e) => e !== event.extension);
      break;
    case "answered":
      call.state = "answered"; call.ringing_extensions = [];
      if (event.extension && call.direction === "inbound") call.agent_extension = event.extension;
      break;
    case "parties_updated": call.caller = event.caller; call.callee = event.callee; break;
    case "held": call.state = "held"; break;
    case "resumed": call.state = "answered"; break;
    case "transferred": call.agent_extension = event.to; break;
    case "ended":
      call.state = "ended"; call.ringing_extensions = [];
      setTimeout(() => { calls.delete(event.call_id); render(); }, 60000);
      break;
  }
}

function connect() {
  const state = document.getElementById("connection");
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onopen = () => { state.textContent = t("online"); state.className = "state online"; reload(); };
  socket.onmessage = (message) => { apply(JSON.parse(message.data)); render(); };
  socket.onclose = () => {
    state.textContent = t("offline"); state.className = "state offline";
    setTimeout(connect, 2000);
  };
}

connect();
