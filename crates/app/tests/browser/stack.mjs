// Shared by the browser tests: a throwaway stack (cache-demo-stack: PostgreSQL, Redis and one or more app
// replicas), headless Chromium on its page, and screenshots into SCREENSHOT_DIR when it is set.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const binDir = process.env.CACHE_DEMO_BIN_DIR || path.join(root, "target", "debug");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts PostgreSQL, Redis and `replicas` apps on them (named replica-a, replica-b, ... through HOSTNAME).
 * Returns { bases: [url per replica], base: the first, stop() }.
 */
export async function startStack({ env = {}, replicas = 1 } = {}) {
  const ports = [];
  for (let i = 0; i < replicas; i++) ports.push(await freePort());
  const app = path.join(binDir, "cache-demo");
  const names = ports.map((_, i) => `replica-${String.fromCharCode(97 + i)}`);
  // One shell starts every replica on the stack's servers; the stack signals its whole process group.
  const script = ports
    .map((p, i) => `HOSTNAME=${names[i]} LISTEN_ADDR=127.0.0.1:${p} "$0" &`)
    .join(" ") + " wait";
  const child = spawn(path.join(binDir, "cache-demo-stack"), ["--", "sh", "-c", script, app], {
    env: { ...process.env, RUST_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout.on("data", (d) => { log += d; });
  child.stderr.on("data", (d) => { log += d; });
  const bases = ports.map((p) => `http://127.0.0.1:${p}`);
  for (const b of bases) await waitReady(child, () => log, `${b}/readyz`, 90_000);
  return {
    bases,
    base: bases[0],
    names,
    log: () => log,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      // SIGTERM, not SIGINT: a shell's background jobs ignore SIGINT.
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitReady(child, log, url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the stack exited (${child.exitCode}):\n${log()}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not ready after ${ms} ms:\n${log()}`);
}

/**
 * Chromium on `base`. The page records requests to anywhere else and Content-Security-Policy violations
 * (page.externalRequests, page.cspViolations); an uncaught page error fails the test.
 */
export async function openPage(base, { width = 1200, height = 1400, timeout = 15_000 } = {}) {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width, height } });
  page.setDefaultTimeout(timeout);
  page.externalRequests = [];
  page.cspViolations = [];
  page.on("request", (req) => {
    if (!req.url().startsWith(base) && !req.url().startsWith("data:")) page.externalRequests.push(req.url());
  });
  page.on("console", (msg) => {
    if (/Content Security Policy/i.test(msg.text())) page.cspViolations.push(msg.text());
  });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(base);
  return { browser, page };
}

/** Saves a screenshot of `selector` (or the full page) as SCREENSHOT_DIR/name.png, when SCREENSHOT_DIR is set. */
export async function screenshot(page, name, selector) {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  const file = path.resolve(dir, `${name}.png`);
  if (selector) await page.locator(selector).screenshot({ path: file });
  else await page.screenshot({ path: file, fullPage: true });
}

/** A figure as a number: "1,234" → 1234, "45.0%" → 45. */
export function num(text) {
  return Number(String(text).replace(/[^0-9.]/g, ""));
}
