// The card's work while the phone rings: a note saved before anyone answers
// lands on the call's ticket, and an unknown caller's number attached to an
// existing customer makes the next call from it pop with that customer's name.
// Its own fiche (so the unknown number of the browser-unknown scenario is still
// unknown here), real calls through Kamailio, Debian's chromium.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Fiche, ADMIN_PASSWORD, playScenario, launchBrowser, newUserContext, waitFor, stopAll, ensureArtifacts,
} from "./harness.js";

const PASSWORD = "motdepasse-claire";
const NUMBER = "+33698765432"; // the caller of the browser-unknown scenario
const EXISTING = { name: "Mme Lefèvre", company: "Fleurs Lefèvre", phones: [{ number: "+33145678901" }] };
const STEP = { timeout: 90000 };

let fiche;
let browser;
let claire;
let token;
let artifactsDir;

/** The ticket-form status of a card, once the save answered. */
async function saved(card) {
  const status = card.locator(".ticket-form .save-status");
  await waitFor(async () => {
    const text = await status.textContent();
    return text && text !== "…";
  }, { timeout: 10000, what: "the save to answer" });
  return status.textContent();
}

/** The open callback for NUMBER, with its events, once `done` holds for it. */
async function callback(done) {
  return waitFor(async () => {
    const page = await fiche.api("GET", `/api/tickets?kind=callback&q=${encodeURIComponent(NUMBER)}`, token);
    const item = (page.body?.items || [])[0];
    if (!item) return null;
    const full = await fiche.api("GET", `/api/tickets/${item.id}`, token);
    return done(full.body) ? full.body : null;
  }, { timeout: 20000, what: "the callback ticket" });
}

const notes = (ticket) => (ticket.events || []).filter((e) => e.kind === "note").map((e) => e.body.text);

describe("Work on the card while it rings", () => {
  before(async () => {
    artifactsDir = ensureArtifacts();
    fiche = await Fiche.start();
    fiche.addUser("claire", { name: "Claire", extensions: ["201"], password: PASSWORD });
    const admin = await fiche.login("admin", ADMIN_PASSWORD);
    const created = await fiche.api("POST", "/api/customers", admin.token, EXISTING);
    assert.ok(created.status === 200 || created.status === 201, `customer created: ${created.status} ${created.text}`);
    token = (await fiche.login("claire", PASSWORD)).token;
    browser = await launchBrowser();
    const context = await newUserContext(browser);
    const answer = await context.request.post(fiche.url("/api/login"), { data: { login: "claire", password: PASSWORD } });
    assert.equal(answer.status(), 200, "POST /api/login");
    claire = await context.newPage();
    claire.errors = [];
    claire.on("pageerror", (error) => claire.errors.push(error.message));
    await claire.goto(fiche.url("/"));
    await claire.locator("#connection.online").waitFor({ timeout: 15000 });
  }, { timeout: 120000 });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await stopAll();
    if (fiche) await fiche.stop();
  });

  it("saves a note typed while the phone rings on the missed call's callback", STEP, async () => {
    const run = await playScenario(fiche, "browser-unknown");
    try {
      const ringing = claire.locator("#calls .card.ringing");
      await ringing.locator(".unknown-label").waitFor({ timeout: 15000 });
      const card = claire.locator(`#calls .card[data-call-id="${await ringing.getAttribute("data-call-id")}"]`);
      await card.locator("textarea.note").fill("A appelé pour un devis de fleurs");
      await card.locator("select[name=reason]").selectOption("order");
      await card.locator("textarea.note").press("Control+Enter");
      // Held: the call had no ticket yet (nobody answered), and that is not an error.
      assert.match(await saved(card), /^Enregistré ✓ \(ira sur le ticket/);
      assert.equal(await card.locator("textarea.note").inputValue(), "", "the note field is cleared once saved");
      await card.screenshot({ path: join(artifactsDir, "agent-card-note-while-ringing.png") });
    } finally {
      const played = await run.done;
      assert.equal(played.code, 0, `scenario browser-unknown:\n${played.output}`);
    }
    // Nobody answered: the note is on the callback, once, with the reason.
    const ticket = await callback((t) => notes(t).length > 0);
    assert.deepEqual(notes(ticket), ["A appelé pour un devis de fleurs"]);
    assert.equal(ticket.reason, "order");
    assert.equal(ticket.attempts, 1);
    await claire.locator("#callbacks-list li.callback").first().waitFor({ timeout: 20000 });
  });

  it("attaches an unknown caller's number to an existing customer; the next call pops with the name", STEP, async () => {
    let run = await playScenario(fiche, "browser-unknown");
    try {
      const ringing = claire.locator("#calls .card.ringing");
      await ringing.locator(".unknown-label").waitFor({ timeout: 15000 });
      const card = claire.locator(`#calls .card[data-call-id="${await ringing.getAttribute("data-call-id")}"]`);
      const search = card.locator(".unknown-box input[name=q]");
      await search.fill("Lefèvre");
      await search.press("Enter");
      const result = card.locator(".unknown-box li", { hasText: "Mme Lefèvre" });
      await result.waitFor({ timeout: 10000 });
      await result.getByRole("button", { name: "Rattacher" }).click();
      await card.locator(".name", { hasText: "Mme Lefèvre" }).waitFor({ timeout: 10000 });
      assert.equal(await card.locator(".unknown-box").count(), 0, "the unknown-caller form is gone");
    } finally {
      const played = await run.done;
      assert.equal(played.code, 0, `scenario browser-unknown:\n${played.output}`);
    }
    const lookup = await fiche.api("GET", `/api/customers/lookup?number=${encodeURIComponent(NUMBER)}`, token);
    assert.equal(lookup.body.matches[0]?.customer.name, "Mme Lefèvre");

    // The next call from that number: the card names her while it rings, and a
    // note typed now joins the callback the earlier missed calls merged into.
    run = await playScenario(fiche, "browser-unknown");
    try {
      const ringing = claire.locator("#calls .card.ringing");
      await ringing.waitFor({ timeout: 15000 });
      const card = claire.locator(`#calls .card[data-call-id="${await ringing.getAttribute("data-call-id")}"]`);
      await card.locator(".name", { hasText: "Mme Lefèvre" }).waitFor({ timeout: 5000 });
      assert.equal(await card.locator(".unknown-label").count(), 0, "not an unknown caller any more");
      assert.match(await card.locator(".company").textContent(), /Fleurs Lefèvre/);
      await card.screenshot({ path: join(artifactsDir, "agent-card-attached-number.png") });
      await card.locator("textarea.note").fill("Troisième appel, à rappeler vite");
      await card.locator("select[name=priority]").selectOption("urgent");
      await card.locator("textarea.note").press("Control+Enter");
      assert.match(await saved(card), /^Enregistré ✓/);
    } finally {
      const played = await run.done;
      assert.equal(played.code, 0, `scenario browser-unknown:\n${played.output}`);
    }
    const ticket = await callback((t) => t.attempts === 3 && notes(t).length === 2);
    assert.deepEqual(notes(ticket), ["A appelé pour un devis de fleurs", "Troisième appel, à rappeler vite"]);
    assert.equal(ticket.priority, "urgent");
    const all = await fiche.api("GET", `/api/tickets?q=${encodeURIComponent(NUMBER)}`, token);
    assert.equal(all.body.total, 1, `one callback for the three missed calls: ${all.text}`);
    assert.deepEqual(claire.errors, [], "no script error on the agent page");
  });
});
