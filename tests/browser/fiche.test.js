// End-to-end browser tests: the real `fiche` binary, real calls from the
// sipp + Kamailio scenarios, Debian's chromium. Run with scripts/browser-tests.sh
// (or `node --test` here once fiche is built and chromium installed).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import WebSocket from "ws";
import {
  Fiche, ADMIN_PASSWORD, playScenario, launchBrowser, newUserContext, waitFor, stopAll, ensureArtifacts,
} from "./harness.js";

const PASSWORD = "motdepasse-claire";
const CUSTOMER = { name: "Mme Martin", company: "Boulangerie Martin", tags: ["VIP"], notes: "Préfère être rappelée le matin.", phones: [{ number: "+33612345678" }] };
const SCRIPT_NAME = "<script>alert(1)</script>";
const STEP = { timeout: 90000 };

/** A raw websocket client that records every message. */
class RawSocket {
  static open(url, headers) {
    return new Promise((done, fail) => {
      const socket = new WebSocket(url, { headers });
      const raw = new RawSocket(socket);
      socket.once("open", () => done(raw));
      socket.once("unexpected-response", (_req, res) => fail(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { statusCode: res.statusCode })));
      socket.once("error", fail);
    });
  }
  constructor(socket) {
    this.socket = socket;
    this.messages = [];
    socket.on("message", (data) => {
      let msg;
      try { msg = JSON.parse(String(data)); } catch { return; }
      this.messages.push(msg);
      if (msg.type === "ping") socket.send(JSON.stringify({ type: "pong" }));
    });
  }
  close() { this.socket.terminate(); }
}

let fiche;
let browser;
let adminToken;
let tokens = {};
let cookies = {};
const pages = {};
let answeredCallId = null;
let artifactsDir;

async function loginPage(context, login, password) {
  const page = await context.newPage();
  page.dialogs = [];
  page.on("dialog", (dialog) => { page.dialogs.push(dialog.message()); dialog.dismiss().catch(() => {}); });
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(error.message));
  // Through the login page when it is there; its fields are found by type so the test does not depend on its ids.
  const shown = await page.goto(fiche.url("/login.html")).then((r) => r && r.ok(), () => false);
  const passwordField = page.locator("input[type=password]");
  if (shown && await passwordField.count()) {
    await page.locator("input:not([type=password]):not([type=hidden]):not([type=submit]):not([type=checkbox])").first().fill(login);
    await passwordField.fill(password);
    await passwordField.press("Enter");
    await page.waitForURL((url) => !url.pathname.endsWith("/login.html"), { timeout: 10000 });
  } else {
    const answer = await context.request.post(fiche.url("/api/login"), { data: { login, password } });
    assert.equal(answer.status(), 200, "POST /api/login");
  }
  return page;
}

async function tileValue(page, key) {
  const text = await page.locator(`[data-figure=${key}] .value`).textContent({ timeout: 1000 }).catch(() => null);
  const n = Number.parseInt(text || "", 10);
  return Number.isFinite(n) ? n : null;
}

describe("Fiche in the browser", () => {
  before(async () => {
    artifactsDir = ensureArtifacts();
    fiche = await Fiche.start();
    fiche.addUser("claire", { name: "Claire", extensions: ["201"], password: PASSWORD });
    fiche.addUser("malik", { name: "Malik", extensions: ["202"], password: PASSWORD });
    fiche.addUser("sophie", { name: "Sophie", role: "supervisor", password: PASSWORD });
    for (const login of ["admin", "claire", "malik", "sophie"]) {
      const answer = await fiche.login(login, login === "admin" ? ADMIN_PASSWORD : PASSWORD);
      assert.equal(answer.status, 200, `login ${login}`);
      tokens[login] = answer.token;
      cookies[login] = answer.cookie;
    }
    adminToken = tokens.admin;
    const created = await fiche.api("POST", "/api/customers", adminToken, CUSTOMER);
    assert.ok(created.status === 200 || created.status === 201, `customer created: ${created.status} ${created.text}`);
    browser = await launchBrowser();
  }, { timeout: 120000 });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await stopAll();
    if (fiche) await fiche.stop();
  });

  it("refuses unauthenticated API calls, pages and websockets", STEP, async () => {
    for (const path of ["/api/customers", "/api/tickets", "/api/calls/live", "/api/me"]) {
      const answer = await fiche.api("GET", path, null);
      assert.equal(answer.status, 401, `GET ${path} without a session`);
    }
    const page = await fiche.api("GET", "/", null);
    assert.equal(page.status, 303, "GET / without a session redirects");
    assert.match(page.headers.get("location") || "", /login\.html/);
    await assert.rejects(RawSocket.open(fiche.wsUrl("/ws")), (error) => error.statusCode === 401 || error.statusCode === 403);
    await assert.rejects(RawSocket.open(fiche.wsUrl("/ws"), { Authorization: "Bearer not-a-token" }), (error) => error.statusCode === 401 || error.statusCode === 403);
  });

  it("logs the agent and the supervisor in and connects their pages", STEP, async () => {
    for (const login of ["claire", "malik", "sophie"]) {
      const context = await newUserContext(browser);
      const page = await loginPage(context, login, PASSWORD);
      await page.goto(fiche.url(login === "sophie" ? "/board.html" : "/"));
      await page.locator("#connection.online").waitFor({ timeout: 15000 });
      pages[login] = page;
    }
    assert.equal(await pages.claire.locator("#connection").textContent(), "Connecté");
    // Every form control has a label a screen reader can read.
    for (const page of [pages.claire, pages.sophie]) {
      const unlabelled = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea")]
        .filter((c) => c.type !== "hidden" && !(c.labels && c.labels.length) && !c.getAttribute("aria-label")).map((c) => c.outerHTML));
      assert.deepEqual(unlabelled, []);
    }
    assert.equal(await pages.claire.locator("html").getAttribute("lang"), "fr");
  });

  it("pops the customer card while the phone rings, saves note and reason, shows the ticket with its duration", STEP, async () => {
    const claire = pages.claire;
    const board = pages.sophie;
    assert.ok(claire && board, "pages from the login step");
    const socketA = await RawSocket.open(fiche.wsUrl("/ws"), { Authorization: `Bearer ${tokens.claire}` });
    const socketB = await RawSocket.open(fiche.wsUrl("/ws"), { Authorization: `Bearer ${tokens.malik}` });
    let run = null;
    try {
      await waitFor(() => socketB.messages.some((m) => m.type === "snapshot"), { what: "agent B's snapshot" });
      const callsBefore = (await tileValue(board, "calls_in")) ?? 0;
      run = await playScenario(fiche, "browser-answered");

      // The card, while it rings.
      const ringing = claire.locator("#calls .card.ringing");
      await ringing.waitFor({ timeout: 15000 });
      answeredCallId = await ringing.getAttribute("data-call-id");
      const card = claire.locator(`#calls .card[data-call-id="${answeredCallId}"]`);
      // The board shows it live, ringing (checked first: the ring lasts 6 s).
      await board.locator(`#live-body tr.ringing[data-call-id="${answeredCallId}"]`).waitFor({ timeout: 6000 });
      await assert.doesNotReject(card.locator(".name", { hasText: "Mme Martin" }).waitFor({ timeout: 5000 }));
      assert.match(await card.locator(".company").textContent(), /Boulangerie Martin/);
      assert.match(await card.locator(".tag").first().textContent(), /VIP/);
      await card.screenshot({ path: join(artifactsDir, "agent-card-ringing.png") });


      // Answered: a note and a reason, saved with the keyboard.
      await claire.locator(`#calls .card.answered[data-call-id="${answeredCallId}"]`).waitFor({ timeout: 15000 });
      await claire.locator("body").press("n");
      const note = claire.locator(`.card[data-call-id="${answeredCallId}"] textarea.note`);
      await waitFor(() => note.evaluate((n) => document.activeElement === n), { what: "N to focus the note" });
      await claire.keyboard.type("Commande 1234 livrée en retard, ");
      // Hub messages arrive while she types (answer, card, ticket): every keystroke still lands in the note.
      await claire.keyboard.type("rappeler demain.");
      assert.equal(await note.inputValue(), "Commande 1234 livrée en retard, rappeler demain.");
      await claire.locator(`.card[data-call-id="${answeredCallId}"] select[name=reason]`).selectOption("order");
      await claire.screenshot({ path: join(artifactsDir, "agent-page-answered.png"), fullPage: true });
      const status = claire.locator(`.card[data-call-id="${answeredCallId}"] .save-status`);
      // Saved at once, whether the call's ticket is written yet or not (then it is held for it).
      await waitFor(async () => {
        await note.focus();
        await claire.keyboard.press("Control+Enter");
        await claire.waitForFunction((el) => el && el.textContent !== "…", await status.elementHandle(), { timeout: 5000 });
        return (await status.textContent()).startsWith("Enregistré ✓");
      }, { timeout: 30000, interval: 500, what: "the note to be saved" }).catch(async (error) => {
        throw new Error(`${error.message}; the card says: ${await status.textContent()}`);
      });

      const played = await run.done;
      assert.equal(played.code, 0, `scenario browser-answered:\n${played.output}`);

      // The ticket, with the note, the reason and the call's duration.
      const ticket = await waitFor(async () => {
        const page = await fiche.api("GET", "/api/tickets?q=%2B33612345678&limit=50", tokens.claire);
        const found = (page.body?.items || []).find((t) => t.call_id === answeredCallId);
        return found && found.last_call && found.last_call.duration_secs !== null && found.last_call.duration_secs !== undefined ? found : null;
      }, { timeout: 20000, what: "the call's ticket with a duration" });
      assert.equal(ticket.reason, "order");
      assert.ok(ticket.last_call.duration_secs >= 1, `duration ${ticket.last_call.duration_secs}`);
      const full = await fiche.api("GET", `/api/tickets/${ticket.id}`, tokens.claire);
      const all = await fiche.api("GET", "/api/tickets?limit=50", tokens.claire);
      assert.ok(JSON.stringify(full.body.events || []).includes("Commande 1234 livrée en retard"),
        `the note is in the ticket's events: ${full.text}\nall tickets: ${all.text}\ncard says: ${await status.textContent()}`);

      // …and in the page: ticket search by number shows it with its duration.
      await claire.locator("body").press("Escape");
      await claire.locator("#search-q").fill("0612345678");
      await claire.locator("#search-q").press("Enter");
      await claire.locator("#search-results .row .duration").first().waitFor({ timeout: 10000 });

      // The figures moved.
      await waitFor(async () => ((await tileValue(board, "calls_in")) ?? 0) > callsBefore, { timeout: 15000, what: "calls in to grow on the board" });

      // Agent B never got A's pop; A's own raw socket did (so the check can fail).
      await waitFor(() => socketA.messages.some((m) => m.type === "pop" && m.call.id === answeredCallId), { what: "agent A's raw socket to get the pop" });
      const leaked = socketB.messages.filter((m) => (m.type === "pop" && m.call.id === answeredCallId) || (m.type === "withdrawn" && m.call_id === answeredCallId));
      assert.deepEqual(leaked, [], "agent B received agent A's pop");
      assert.equal(await pages.malik.locator(`.card[data-call-id="${answeredCallId}"]`).count(), 0, "agent B's page shows no card");
    } finally {
      socketA.close();
      socketB.close();
      if (run) await run.done; // bounded by the runner's own timeout
    }
  });

  it("shows a hostile display name literally, and the missed call in Mes rappels and on the board", STEP, async () => {
    const claire = pages.claire;
    const board = pages.sophie;
    const scriptsBefore = await claire.evaluate(() => document.scripts.length);
    const missedBefore = (await tileValue(board, "missed")) ?? 0;
    const run = await playScenario(fiche, "browser-missed-script");
    try {

    const ringing = claire.locator("#calls .card.ringing");
    await ringing.waitFor({ timeout: 15000 });
    const callId = await ringing.getAttribute("data-call-id");
    const card = claire.locator(`#calls .card[data-call-id="${callId}"]`);
    assert.notEqual(callId, answeredCallId);
    await card.getByText(SCRIPT_NAME, { exact: true }).waitFor({ timeout: 5000 });
    await claire.screenshot({ path: join(artifactsDir, "agent-card-script-name.png"), fullPage: true });
    const boardName = board.locator(`#live-body tr[data-call-id="${callId}"] .caller-name`);
    await boardName.waitFor({ timeout: 10000 });
    assert.equal(await boardName.textContent(), SCRIPT_NAME);
    await board.screenshot({ path: join(artifactsDir, "board-ringing.png"), fullPage: true });

    const played = await run.done;
    assert.equal(played.code, 0, `scenario browser-missed-script:\n${played.output}`);
    for (const page of [claire, board]) {
      assert.deepEqual(page.dialogs, [], "no dialog opened");
      assert.equal(await page.evaluate(() => document.querySelectorAll("main script, dialog script").length), 0, "no injected script element");
    }
    assert.equal(await claire.evaluate(() => document.scripts.length), scriptsBefore);

    // Mes rappels lists the missed call; the board counts it and lists it under "À rappeler".
    await claire.locator("#callbacks-list li.callback").first().waitFor({ timeout: 20000 });
    assert.match(await claire.locator("#callbacks-list").textContent(), /Mme Martin|06 12 34 56 78|\+33612345678/);
    await waitFor(async () => ((await tileValue(board, "missed")) ?? 0) > missedBefore, { timeout: 20000, what: "missed to grow on the board" });
    await board.locator("#overdue li").first().waitFor({ timeout: 20000 });
    await claire.screenshot({ path: join(artifactsDir, "agent-callbacks.png"), fullPage: true });
    await board.screenshot({ path: join(artifactsDir, "board.png"), fullPage: true });
    assert.deepEqual(claire.errors, [], "no script error on the agent page");
    assert.deepEqual(board.errors, [], "no script error on the board");
    } finally {
      await run.done;
    }
  });

  it("tells the other ringing agents who took a ring-group call", STEP, async () => {
    const claire = pages.claire;
    const run = await playScenario(fiche, "ring-group");
    try {
      const card = claire.locator("#calls .card.withdrawn");
      await card.waitFor({ timeout: 15000 });
      await waitFor(async () => /Pris par .*202/.test(await card.locator(".state-label").textContent()), { timeout: 10000, what: "the card to say who took the call" });
      await claire.screenshot({ path: join(artifactsDir, "agent-withdrawn.png"), fullPage: true });
      // Malik's phone (202) answered: his page follows the call as his.
      const callId = await card.getAttribute("data-call-id");
      await pages.malik.locator(`.card[data-call-id="${callId}"]`).waitFor({ timeout: 10000 });
      // Esc dismisses the withdrawn card.
      await claire.locator("body").click();
      for (let i = 0; i < 10 && await claire.locator(`.card[data-call-id="${callId}"]`).count(); i += 1) {
        await claire.keyboard.press("Escape");
      }
      assert.equal(await claire.locator(`.card[data-call-id="${callId}"]`).count(), 0, "Esc dismissed the card");
    } finally {
      const played = await run.done;
      assert.equal(played.code, 0, `scenario ring-group:\n${played.output}`);
    }
  });

  it("offers to create the customer for an unknown caller, from the card", STEP, async () => {
    const claire = pages.claire;
    // A second tab of Claire's, hidden, where Notification only records what it is asked to show.
    const hidden = await claire.context().newPage();
    await hidden.addInitScript(() => {
      Object.defineProperty(Document.prototype, "hidden", { get: () => true });
      window.shown = [];
      window.Notification = class {
        static permission = "granted";
        static requestPermission() { return Promise.resolve("granted"); }
        constructor(title, options) { window.shown.push({ title, body: options && options.body }); }
        close() {}
      };
    });
    await hidden.goto(fiche.url("/"));
    await hidden.locator("#connection.online").waitFor({ timeout: 15000 });
    const run = await playScenario(fiche, "browser-unknown");
    try {
      const ringing = claire.locator("#calls .card.ringing");
      await ringing.locator(".unknown-label", { hasText: "Appelant inconnu" }).waitFor({ timeout: 15000 });
      // Follow this call's card even once it stops ringing.
      const card = claire.locator(`#calls .card[data-call-id="${await ringing.getAttribute("data-call-id")}"]`);
      const name = card.locator(".unknown-box input[name=name]");
      assert.equal(await name.inputValue(), "Jean Durand", "the signalled name is offered");
      await name.fill("M. Jean Durand");
      await card.locator(".unknown-box input[name=company]").fill("Garage Durand");
      await card.locator(".unknown-box input[name=company]").press("Enter");
      await card.locator(".name", { hasText: "M. Jean Durand" }).waitFor({ timeout: 10000 });
      const lookup = await fiche.api("GET", "/api/customers/lookup?number=%2B33698765432", tokens.claire);
      assert.equal(lookup.body.matches[0]?.customer.name, "M. Jean Durand");
      const shown = await waitFor(() => hidden.evaluate(() => window.shown.length && window.shown), { what: "a notification in the hidden tab" });
      assert.equal(shown[0].title, "Appel entrant");
      assert.match(shown[0].body, /Jean Durand/);
      assert.equal(await claire.evaluate(() => typeof window.shown), "undefined", "the visible tab does not notify");
    } finally {
      await hidden.close();
      const played = await run.done;
      assert.equal(played.code, 0, `scenario browser-unknown:\n${played.output}`);
    }
  });

  it("opens the customer file with its history", STEP, async () => {
    const claire = pages.claire;
    await claire.locator("#search-q").fill("Martin");
    await claire.locator("#search-q").press("Enter");
    await claire.locator("#search-results .row button.open-file").first().click();
    const dialog = claire.locator("#customer-file");
    await dialog.locator("dd", { hasText: "Boulangerie Martin" }).waitFor({ timeout: 10000 });
    await dialog.locator(".rows .row").first().waitFor({ timeout: 10000 });
    assert.equal(await dialog.locator("dd", { hasText: "+33612345678" }).count() + await dialog.locator("dd", { hasText: "06 12 34 56 78" }).count() > 0, true, "the phone is listed");
    await claire.screenshot({ path: join(artifactsDir, "agent-customer-file.png"), fullPage: true });

    // A ticket closed from the file can be reopened from it, and the server keeps each change.
    // Claire only gets the button on tickets she may change (hers or nobody's), not
    // on the ring-group call Malik took.
    const row = dialog.locator(".rows .row").filter({ has: claire.locator("button.status-toggle") }).first();
    const id = await row.getAttribute("data-ticket-id");
    const before = (await fiche.api("GET", `/api/tickets/${id}`, tokens.claire)).body.status;
    const after = before === "closed" ? "open" : "closed";
    for (const [status, label] of [[after, after === "closed" ? "Rouvrir" : "Clore"], [before, before === "closed" ? "Rouvrir" : "Clore"]]) {
      await row.locator("button.status-toggle").click();
      await row.locator(`.pill.${status}`).waitFor({ timeout: 10000 });
      assert.equal((await row.locator("button.status-toggle").textContent()).trim(), label);
      const stored = await fiche.api("GET", `/api/tickets/${id}`, tokens.claire);
      assert.equal(stored.body.status, status, `ticket ${id} after the toggle: ${stored.text}`);
    }
    await claire.locator("#file-close").click();
  });

  it("hides click-to-call when the server has no AMI source, keeping the tel: link", STEP, async () => {
    const claire = pages.claire;
    const row = claire.locator("#callbacks-list li.callback").first();
    await row.waitFor({ timeout: 10000 });
    const answer = await fiche.api("POST", "/api/calls/originate", tokens.claire, { number: "+33698765432" });
    assert.equal(answer.status, 503, `originate without AMI: ${answer.text}`);
    await row.locator("button.call-button").click();
    await claire.locator("#no-ami").waitFor({ timeout: 10000 });
    assert.equal(await claire.locator("#callbacks-list button.call-button:visible").count(), 0);
    assert.match(await row.locator("a.tel").getAttribute("href"), /^tel:\+33/);
  });

  it("asks for a snapshot after a seq gap and answers pings", STEP, async () => {
    const page = await pages.claire.context().newPage();
    const fromServer = [];
    const fromPage = [];
    let toPage = null;
    await page.routeWebSocket(/\/ws$/, (socket) => {
      const server = socket.connectToServer();
      toPage = socket;
      server.onMessage((message) => { fromServer.push(JSON.parse(String(message))); socket.send(message); });
      socket.onMessage((message) => { fromPage.push(JSON.parse(String(message))); server.send(message); });
    });
    try {
      await page.goto(fiche.url("/"));
      await page.locator("#connection.online").waitFor({ timeout: 15000 });
      const last = () => Math.max(...fromServer.filter((m) => m.type !== "ping" && m.type !== "pong" && m.type !== "error").map((m) => m.seq));
      const badge = await page.locator("#callbacks-count").textContent();
      // A ping is answered with a pong.
      toPage.send(JSON.stringify({ v: 1, seq: last(), type: "ping" }));
      await waitFor(() => fromPage.some((m) => m.type === "pong"), { what: "a pong" });
      assert.ok(!fromPage.some((m) => m.type === "resync"), "no resync without a gap");
      // A message that skips a seq is not applied; the page asks for a snapshot and gets one.
      const snapshots = fromServer.filter((m) => m.type === "snapshot").length;
      toPage.send(JSON.stringify({ v: 1, seq: last() + 5, type: "callbacks", open: 4242 }));
      await waitFor(() => fromPage.some((m) => m.type === "resync"), { what: "a resync" });
      await waitFor(() => fromServer.filter((m) => m.type === "snapshot").length > snapshots, { what: "a fresh snapshot" });
      assert.equal(await page.locator("#callbacks-count").textContent(), badge, "the out-of-order count was not applied");
    } finally {
      await page.close();
    }
  });

  it("speaks English with ?lang=en, and remembers the toggle", STEP, async () => {
    const page = pages.claire;
    await page.goto(fiche.url("/?lang=en"));
    await page.locator("#connection.online").waitFor({ timeout: 15000 });
    assert.equal(await page.locator("#connection").textContent(), "Connected");
    assert.equal(await page.locator("#callbacks-title").textContent(), "My callbacks");
    // The toggle goes back to French and the choice survives a plain reload.
    await page.locator("#lang-toggle").click();
    await page.locator("#callbacks-title", { hasText: "Mes rappels" }).waitFor({ timeout: 10000 });
    await page.goto(fiche.url("/"));
    await page.locator("#callbacks-title", { hasText: "Mes rappels" }).waitFor({ timeout: 10000 });
    await page.locator("#lang-toggle").click();
    await page.locator("#callbacks-title", { hasText: "My callbacks" }).waitFor({ timeout: 10000 });
    await page.goto(fiche.url("/"));
    await page.locator("#callbacks-title", { hasText: "My callbacks" }).waitFor({ timeout: 10000 });
  });
});
