// Real processes for the browser tests: the `fiche` binary on its own ports
// with a temporary SQLite database, the sipp + Kamailio scenarios of
// sip-test-scripts/ pointed at its HEP port, and Debian's chromium driven by
// playwright-core. Every child runs in its own process group and is killed by
// PID at the end, even when a test fails.

import { spawn, spawnSync, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const artifacts = join(repoRoot, "tests", "artifacts");
export const ADMIN_PASSWORD = "admin-browser-tests";

const children = new Set();

function killGroup(child, signal) {
  try { process.kill(-child.pid, signal); } catch { /* gone */ }
}

/** Stops one child (its whole process group): SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child, graceMs = 3000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) { children.delete(child); return; }
  const exited = new Promise((done) => child.once("exit", done));
  killGroup(child, "SIGTERM");
  const timer = setTimeout(() => killGroup(child, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

export async function stopAll() {
  await Promise.all([...children].map((child) => stopChild(child)));
}

// Last resort when the runner itself is interrupted.
process.on("exit", () => { for (const child of children) killGroup(child, "SIGKILL"); });

function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Polls `check` until it returns a truthy value; throws with `what` after `timeout` ms. */
export async function waitFor(check, { timeout = 15000, interval = 100, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let lastError = null;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) { lastError = error; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ""}`);
    await new Promise((done) => setTimeout(done, interval));
  }
}

export async function freeTcpPort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => done(port)); });
  });
}

export async function freeUdpPort() {
  return new Promise((done, fail) => {
    const socket = createSocket("udp4");
    socket.once("error", fail);
    socket.bind(0, "127.0.0.1", () => { const { port } = socket.address(); socket.close(() => done(port)); });
  });
}

export function ficheBinary() {
  return process.env.FICHE_BIN || join(repoRoot, "target", "debug", "fiche");
}

function boundPort(log, what) {
  const line = log.split("\n").find((l) => l.includes(what));
  if (!line) return null;
  const match = /addr=Some\(127\.0\.0\.1:(\d+)\)/.exec(line) || /127\.0\.0\.1:(\d+)/.exec(line);
  const port = match ? Number(match[1]) : 0;
  return port > 0 ? port : null;
}

/** One running `fiche serve` with its own database and ports. */
export class Fiche {
  static async start() {
    const dir = mkdtempSync(join(tmpdir(), "fiche-browser-"));
    const env = {
      ...process.env,
      FICHE_HTTP_ADDR: "127.0.0.1:0",
      FICHE_HEP_ADDR: "127.0.0.1:0",
      FICHE_DATABASE_URL: `sqlite://${dir}/fiche.db`,
      FICHE_AGENT_EXTENSIONS: "2\\d\\d",
      FICHE_WEB_ROOT: join(repoRoot, "web-popup"),
      FICHE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      FICHE_LOG: process.env.FICHE_LOG || "info",
      NO_COLOR: "1",
      FICHE_AMI_ADDR: "", FICHE_AMI_USER: "", FICHE_AMI_SECRET: "",
    };
    const logPath = join(dir, "fiche.log");
    const out = openSync(logPath, "a");
    const child = track(spawn(ficheBinary(), ["serve"], { env, cwd: dir, detached: true, stdio: ["ignore", out, out] }));
    const fiche = new Fiche(dir, env, child, logPath);
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`fiche exited with ${child.exitCode}`);
        const log = fiche.log();
        fiche.httpPort = boundPort(log, "HTTP listening");
        fiche.hepPort = boundPort(log, "HEP UDP listening");
        if (!fiche.httpPort || !fiche.hepPort) return false;
        const response = await fetch(fiche.url("/healthz"));
        return response.ok;
      }, { timeout: 20000, what: "fiche to log its ports and answer /healthz" });
    } catch (error) {
      throw new Error(`${error.message}\n--- fiche log tail:\n${fiche.log().split("\n").slice(-30).join("\n")}`);
    }
    return fiche;
  }

  constructor(dir, env, child, logPath) {
    Object.assign(this, { dir, env, child, logPath, httpPort: null, hepPort: null });
  }

  url(path) { return `http://127.0.0.1:${this.httpPort}${path}`; }
  wsUrl(path = "/ws") { return `ws://127.0.0.1:${this.httpPort}${path}`; }
  log() { try { return readFileSync(this.logPath, "utf8"); } catch { return ""; } }

  /** `fiche user add` with the password on stdin. */
  addUser(login, { role = "agent", name = login, extensions = [], password }) {
    const args = ["user", "add", login, "--name", name, "--role", role];
    if (extensions.length) args.push("--extension", extensions.join(","));
    const result = spawnSync(ficheBinary(), args, { env: this.env, cwd: this.dir, input: `${password}\n`, encoding: "utf8", timeout: 30000 });
    if (result.status !== 0) throw new Error(`fiche user add ${login} failed (${result.status}): ${result.stderr || result.stdout}`);
  }

  /** POST /api/login → {token, cookie, status, user}. */
  async login(login, password) {
    const response = await fetch(this.url("/api/login"), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ login, password }),
    });
    const body = await response.json().catch(() => null);
    const setCookie = response.headers.get("set-cookie") || "";
    const cookie = (/fiche_session=[^;]+/.exec(setCookie) || [null])[0];
    return { status: response.status, token: body && body.token, user: body && body.user, cookie };
  }

  /** JSON API call with a bearer token. */
  async api(method, path, token, body) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.url(path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), redirect: "manual" });
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    return { status: response.status, body: json, text, headers: response.headers };
  }

  async stop() {
    await stopChild(this.child);
    if (!process.env.FICHE_BROWSER_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One running `fiche demo` on a port of its own: its throwaway database, its
 * simulated phone system, the pages built into the binary. `passwords` holds
 * the printed table's passwords by login.
 */
export class Demo {
  static async start() {
    const dir = mkdtempSync(join(tmpdir(), "fiche-demo-browser-"));
    const env = { ...process.env, FICHE_LOG: process.env.FICHE_LOG || "info", NO_COLOR: "1" };
    // What the evaluator runs: the built-in pages, no configuration at all.
    for (const key of Object.keys(env)) if (key.startsWith("FICHE_") && key !== "FICHE_LOG") delete env[key];
    const logPath = join(dir, "demo.log");
    const out = openSync(logPath, "a");
    const child = track(spawn(ficheBinary(), ["demo", "--http", "127.0.0.1:0"], { env, cwd: dir, detached: true, stdio: ["ignore", out, out] }));
    const demo = new Demo(dir, child, logPath);
    try {
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`fiche demo exited with ${child.exitCode}`);
        demo.httpPort = boundPort(demo.log(), "HTTP listening");
        if (!demo.httpPort) return false;
        const response = await fetch(demo.url("/healthz"));
        return response.ok;
      }, { timeout: 30000, what: "fiche demo to log its port and answer /healthz" });
    } catch (error) {
      throw new Error(`${error.message}\n--- fiche demo log tail:\n${demo.log().split("\n").slice(-30).join("\n")}`);
    }
    for (const line of demo.log().split("\n")) {
      const match = /^\s+(claire|nadia|mathilde|admin)\s+(\S+)\s/.exec(line);
      if (match) demo.passwords[match[1]] = match[2];
    }
    return demo;
  }

  constructor(dir, child, logPath) {
    Object.assign(this, { dir, child, logPath, httpPort: null, passwords: {} });
  }

  url(path) { return `http://127.0.0.1:${this.httpPort}${path}`; }
  log() { try { return readFileSync(this.logPath, "utf8"); } catch { return ""; } }

  async stop() {
    await stopChild(this.child);
    if (!process.env.FICHE_BROWSER_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Plays a scenario of sip-test-scripts/ through Kamailio with its HEP mirror
 * pointed at `fiche`, using the runner's documented port variables. Resolves
 * to {code, output} when the runner exits (it stops its own children).
 */
export async function playScenario(fiche, scenario) {
  const ports = {
    PBX_PORT: await freeUdpPort(), CALLER_PORT: await freeUdpPort(), PHONE_201_PORT: await freeUdpPort(),
    PHONE_202_PORT: await freeUdpPort(), PHONE_203_PORT: await freeUdpPort(), TRUNK_PORT: await freeUdpPort(),
  };
  const env = {
    ...process.env, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
    HEP_PORT: String(fiche.hepPort), HTTP_PORT: String(fiche.httpPort), SCENARIO_TIMEOUT: "25",
  };
  const runner = join(repoRoot, "sip-test-scripts", "run-scenario.sh");
  const child = track(spawn(runner, ["--no-fiche", scenario], { env, detached: true, stdio: ["ignore", "pipe", "pipe"] }));
  let output = "";
  child.stdout.on("data", (d) => { output += d; });
  child.stderr.on("data", (d) => { output += d; });
  const done = new Promise((resolveDone) => child.once("exit", (code) => resolveDone({ code, output })));
  return { child, done };
}

export function chromiumPath() {
  if (process.env.CHROMIUM_BIN) return process.env.CHROMIUM_BIN;
  return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], { encoding: "utf8" }).trim();
}

/** Debian's chromium, headless; playwright gives it a fresh temporary --user-data-dir. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage", "--lang=fr-FR"],
    timeout: 30000,
  });
}

/** A fresh browser context for one user (its own cookies). */
export async function newUserContext(browser) {
  return browser.newContext({ viewport: { width: 1280, height: 860 }, locale: "fr-FR" });
}

export function ensureArtifacts() {
  mkdirSync(artifacts, { recursive: true });
  return artifacts;
}
