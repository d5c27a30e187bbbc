// Product text in French (default) and English. The language comes from
// ?lang=, else from the toggle saved in localStorage, else French.
// Every string here is ours; outside text never goes through this module.

const TEXT = {
  fr: {
    app: "Fiche", offline: "Hors ligne", online: "Connecté", connecting: "Connexion…",
    logout: "Déconnexion", switch_lang: "English", switch_lang_label: "Switch to English",
    no_calls: "Aucun appel en cours. La fiche s’ouvrira dès que votre téléphone sonne.",
    current_calls: "Appels", unknown: "Appelant inconnu", withheld: "Numéro masqué",
    setup: "Appel", ringing: "Sonne", answered: "En ligne", held: "En attente", ended: "Terminé",
    ext: "poste", inbound: "entrant", outbound: "sortant", internal: "interne",
    taken_by: "Pris par {who}", stopped_ringing: "A cessé de sonner",
    company: "Société", tags: "Étiquettes", notes: "Notes", open_tickets: "Tickets ouverts",
    open_in_odoo: "Ouvrir dans Odoo", open_ticket_in_odoo: "Ticket #{id} dans Odoo",
    recent: "Derniers échanges", none: "Aucun", other_matches: "Autres clients avec ce numéro",
    create_customer: "Créer la fiche client", name: "Nom", create: "Créer",
    attach_to: "…ou rattacher ce numéro à un client existant", search_customer: "Rechercher un client",
    attach: "Rattacher", created: "Fiche créée.", attached: "Numéro rattaché.",
    ticket: "Ticket", note: "Note", note_placeholder: "Ce que le client demande…",
    reason: "Motif", priority: "Priorité", follow_up: "À rappeler le", close_ticket: "Clore le ticket", close_short: "Clore", reopen: "Rouvrir",
    save: "Enregistrer", saved: "Enregistré ✓", save_failed: "Échec de l’enregistrement : {why}",
    saved_held: "Enregistré ✓ (ira sur le ticket de l’appel)", nothing_to_save: "Rien à enregistrer : écrivez une note ou choisissez un motif.",
    dismiss: "Fermer",
    reason_info: "Information", reason_order: "Commande", reason_complaint: "Réclamation",
    reason_billing: "Facturation", reason_support: "Dépannage / SAV", reason_other: "Autre",
    prio_low: "Basse", prio_normal: "Normale", prio_high: "Haute", prio_urgent: "Urgente",
    hints: "N note · Ctrl+Entrée enregistrer · F clore · Échap fermer · R rappels · / recherche",
    callbacks: "Mes rappels", no_callbacks: "Aucun rappel en attente.",
    overdue: "en retard", due: "à rappeler {when}", attempts: "{n} tentative(s)",
    call_back: "Appeler", calling: "Appel lancé…", done: "Fait", team: "équipe",
    no_ami: "Appel depuis Fiche indisponible : utilisez le lien du numéro.",
    search: "Recherche de tickets", search_placeholder: "Client ou numéro", search_go: "Chercher",
    no_results: "Aucun résultat.", status_open: "ouvert", status_closed: "clos",
    kind_call: "Appel", kind_callback: "Rappel", kind_manual: "Ticket",
    customer_file: "Fiche client", history: "Historique", calls: "Appels", tickets: "Tickets",
    outcome_answered: "répondu", outcome_missed: "manqué", outcome_busy: "occupé",
    outcome_rejected: "rejeté", outcome_failed: "échec", open_file: "Ouvrir la fiche",
    outcome_voicemail: "messagerie", outcome_forwarded: "renvoyé",
    notif_title: "Appel entrant", error: "Erreur",
    board: "Tableau de bord", live_calls: "Appels en direct", agents: "Agents", figures: "Aujourd’hui",
    no_live_calls: "Aucun appel en ce moment.", state: "État", duration: "Durée", caller: "Correspondant",
    agent: "Agent", customer: "Client", no_agents: "Aucun agent connu.", shown_as: "Nom affiché :", phone: "Téléphone",
    st_available: "Disponible", st_ringing: "Sonne", st_on_call: "En ligne", st_on_hold: "En attente",
    st_offline: "Hors ligne",
    f_calls_in: "Appels entrants", f_calls_out: "Appels sortants", f_answered_rate: "Taux de réponse",
    f_missed: "Manqués", f_missed_not_called_back: "Manqués non rappelés",
    f_overdue_callbacks: "Rappels en retard", f_average_wait: "Attente moyenne",
    f_average_duration: "Durée moyenne", f_open_tickets: "Tickets ouverts",
    oldest: "le plus ancien : {when}", calls_per_hour: "Appels par heure",
    to_call_back: "À rappeler", agent_page: "Page agent", board_link: "Tableau de bord",
    simulate_call: "Simuler un appel", simulate_call_title: "Démonstration : le standard simulé appelle maintenant",
    simulated: "Appel simulé : {what}", simulate_failed: "Pas d’appel simulé : {why}",
  },
  en: {
    app: "Fiche", offline: "Offline", online: "Connected", connecting: "Connecting…",
    logout: "Log out", switch_lang: "Français", switch_lang_label: "Passer en français",
    no_calls: "No call right now. The card opens as soon as your phone rings.",
    current_calls: "Calls", unknown: "Unknown caller", withheld: "Number withheld",
    setup: "Calling", ringing: "Ringing", answered: "Talking", held: "On hold", ended: "Ended",
    ext: "ext.", inbound: "inbound", outbound: "outbound", internal: "internal",
    taken_by: "Taken by {who}", stopped_ringing: "Stopped ringing",
    company: "Company", tags: "Tags", notes: "Notes", open_tickets: "Open tickets",
    open_in_odoo: "Open in Odoo", open_ticket_in_odoo: "Ticket #{id} in Odoo",
    recent: "Recent contacts", none: "None", other_matches: "Other customers with this number",
    create_customer: "Create the customer", name: "Name", create: "Create",
    attach_to: "…or attach this number to an existing customer", search_customer: "Search a customer",
    attach: "Attach", created: "Customer created.", attached: "Number attached.",
    ticket: "Ticket", note: "Note", note_placeholder: "What the customer asks…",
    reason: "Reason", priority: "Priority", follow_up: "Follow up on", close_ticket: "Close the ticket", close_short: "Close", reopen: "Reopen",
    save: "Save", saved: "Saved ✓", save_failed: "Could not save: {why}",
    saved_held: "Saved ✓ (goes on the call’s ticket)", nothing_to_save: "Nothing to save: type a note or pick a reason.",
    dismiss: "Dismiss",
    reason_info: "Information", reason_order: "Order", reason_complaint: "Complaint",
    reason_billing: "Billing", reason_support: "Support", reason_other: "Other",
    prio_low: "Low", prio_normal: "Normal", prio_high: "High", prio_urgent: "Urgent",
    hints: "N note · Ctrl+Enter save · F close · Esc dismiss · R callbacks · / search",
    callbacks: "My callbacks", no_callbacks: "No callback waiting.",
    overdue: "overdue", due: "call back {when}", attempts: "{n} attempt(s)",
    call_back: "Call", calling: "Calling…", done: "Done", team: "team",
    no_ami: "Calling from Fiche is unavailable: use the number link.",
    search: "Ticket search", search_placeholder: "Customer or number", search_go: "Search",
    no_results: "No result.", status_open: "open", status_closed: "closed",
    kind_call: "Call", kind_callback: "Callback", kind_manual: "Ticket",
    customer_file: "Customer file", history: "History", calls: "Calls", tickets: "Tickets",
    outcome_answered: "answered", outcome_missed: "missed", outcome_busy: "busy",
    outcome_rejected: "rejected", outcome_failed: "failed", open_file: "Open file",
    outcome_voicemail: "voicemail", outcome_forwarded: "forwarded",
    notif_title: "Incoming call", error: "Error",
    board: "Board", live_calls: "Live calls", agents: "Agents", figures: "Today",
    no_live_calls: "No call right now.", state: "State", duration: "Duration", caller: "Party",
    agent: "Agent", customer: "Customer", no_agents: "No agent yet.", shown_as: "Shown as:", phone: "Phone",
    st_available: "Available", st_ringing: "Ringing", st_on_call: "On a call", st_on_hold: "On hold",
    st_offline: "Offline",
    f_calls_in: "Inbound calls", f_calls_out: "Outbound calls", f_answered_rate: "Answered rate",
    f_missed: "Missed", f_missed_not_called_back: "Missed, not called back",
    f_overdue_callbacks: "Overdue callbacks", f_average_wait: "Average wait",
    f_average_duration: "Average duration", f_open_tickets: "Open tickets",
    oldest: "oldest: {when}", calls_per_hour: "Calls per hour",
    to_call_back: "To call back", agent_page: "Agent page", board_link: "Board",
    simulate_call: "Simulate a call", simulate_call_title: "Demo: the simulated phone system calls now",
    simulated: "Simulated call: {what}", simulate_failed: "No simulated call: {why}",
  },
};

const STORAGE_KEY = "fiche.lang";

function pick() {
  const fromUrl = new URLSearchParams(location.search).get("lang");
  if (fromUrl === "en" || fromUrl === "fr") return fromUrl;
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved === "en" || saved === "fr") return saved;
  } catch { /* storage may be disabled */ }
  return "fr";
}

export const lang = pick();
export const locale = lang === "en" ? "en-GB" : "fr-FR";

/** The text for `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = TEXT[lang][key] ?? TEXT.fr[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Fills [data-i18n] (text), [data-i18n-placeholder], [data-i18n-label] (aria-label) and [data-i18n-title]. */
export function applyI18n(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

/** Saves the other language and reloads the page in it. */
export function toggleLang() {
  const next = lang === "fr" ? "en" : "fr";
  try { localStorage.setItem(STORAGE_KEY, next); } catch { /* ignore */ }
  const url = new URL(location.href);
  url.searchParams.delete("lang");
  if (next === "en") url.searchParams.set("lang", "en");
  location.href = url.toString();
}
