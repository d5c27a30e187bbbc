// `fiche demo` alone in the browser (no Kamailio, no sipp): what an evaluator
// sees in the first minute. Claire logs in and her phone rings within 30 s
// (the demo's simulated phone system calls an agent who opens her page); the
// admin clicks "Simuler un appel" on the board and the call shows up there.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Demo, launchBrowser, newUserContext, stopAll, ensureArtifacts } from "./harness.js";

const STEP = { timeout: 90000 };

let demo;
let browser;
let artifactsDir;

async function loginPage(context, login) {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (error) => page.errors.push(error.message));
  await page.goto(demo.url("/"));
  await page.waitForURL((url) => url.pathname.endsWith("/login.html"), { timeout: 10000 });
  await page.locator("input:not([type=password]):not([type=hidden]):not([type=submit]):not([type=checkbox])").first().fill(login);
  const password = page.locator("input[type=password]");
  await password.fill(demo.passwords[login]);
  await password.press("Enter");
  await page.waitForURL((url) => !url.pathname.endsWith("/login.html"), { timeout: 10000 });
  return page;
}

describe("fiche demo in the browser", () => {
  before(async () => {
    artifactsDir = ensureArtifacts();
    demo = await Demo.start();
    for (const login of ["claire", "nadia", "mathilde", "admin"]) {
      assert.ok(demo.passwords[login], `the demo prints ${login}'s password:\n${demo.log()}`);
    }
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (demo) await demo.stop();
    await stopAll();
  });

  it("pops a customer card for Claire within 30 s of her login", STEP, async () => {
    const context = await newUserContext(browser);
    try {
      const claire = await loginPage(context, "claire");
      assert.equal(new URL(claire.url()).pathname, "/");
      await claire.locator("#connection.online").waitFor({ timeout: 15000 });
      const card = claire.locator("#calls .card").first();
      await card.waitFor({ timeout: 30000 });
      await claire.screenshot({ path: join(artifactsDir, "demo-claire-pop.png") });
      // The card says who calls: a customer's name, an unknown caller or a withheld number.
      const text = await card.textContent();
      assert.match(text, /\S/, "the card shows something");
      assert.deepEqual(claire.errors, [], "no script error on the agent page");
    } catch (error) {
      throw new Error(`${error.message}\n--- demo log tail:\n${demo.log().split("\n").slice(-40).join("\n")}`);
    } finally {
      await context.close();
    }
  });

  it("shows admins « Simuler un appel », whose call appears on the board", STEP, async () => {
    const context = await newUserContext(browser);
    try {
      const admin = await loginPage(context, "admin");
      assert.equal(new URL(admin.url()).pathname, "/board.html");
      await admin.locator("#connection.online").waitFor({ timeout: 15000 });
      const button = admin.getByRole("button", { name: "Simuler un appel" });
      await button.waitFor({ state: "visible", timeout: 10000 });
      const [answer] = await Promise.all([
        admin.waitForResponse((r) => r.url().endsWith("/api/demo/calls") && r.request().method() === "POST", { timeout: 10000 }),
        button.click(),
      ]);
      assert.equal(answer.status(), 202);
      const placed = await answer.json();
      await admin.locator("#demo-status", { hasText: "Appel simulé" }).waitFor({ timeout: 5000 });
      await admin.locator(`#live-body tr.live-call[data-call-id="${placed.call_ids[0]}"]`).waitFor({ timeout: 10000 });
      await admin.screenshot({ path: join(artifactsDir, "demo-board.png") });
      assert.deepEqual(admin.errors, [], "no script error on the board");
    } catch (error) {
      throw new Error(`${error.message}\n--- demo log tail:\n${demo.log().split("\n").slice(-40).join("\n")}`);
    } finally {
      await context.close();
    }

    // A supervisor sees the board but no button; outside the demo it does not exist either.
    const supervisor = await newUserContext(browser);
    try {
      const page = await loginPage(supervisor, "mathilde");
      await page.locator("#connection.online").waitFor({ timeout: 15000 });
      assert.equal(await page.locator("#simulate-call").isVisible(), false);
    } finally {
      await supervisor.close();
    }
  });
});
