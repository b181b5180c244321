// The dashboard in headless Chromium against the app on a throwaway local stack (cache-demo-stack).
// Run with `make test-browser`; it saves a screenshot to target/dashboard.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
const binDir = process.env.CACHE_DEMO_BIN_DIR || path.join(root, "target", "debug");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const screenshot = process.env.SCREENSHOT || path.join(root, "target", "dashboard.png");
const TIMEOUT = 15_000;
// As in Kubernetes, where the Secret sets one: flushing needs it.
const ADMIN_TOKEN = "dashboard-test-token";

let stack, browser, page, base;
let stackLog = "";

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitReady(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (stack.exitCode !== null) throw new Error(`the stack exited (${stack.exitCode}):\n${stackLog}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not ready after ${ms} ms:\n${stackLog}`);
}

const text = (sel) => page.locator(sel).innerText();
const number = async (sel) => Number((await text(sel)).replace(/[^0-9.]/g, ""));

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  stack = spawn(path.join(binDir, "cache-demo-stack"), ["--", path.join(binDir, "cache-demo")], {
    env: { ...process.env, LISTEN_ADDR: `127.0.0.1:${port}`, CACHE_TTL_SECS: "60", RUST_LOG: "warn", ADMIN_TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  stack.stdout.on("data", (d) => { stackLog += d; });
  stack.stderr.on("data", (d) => { stackLog += d; });
  await waitReady(`${base}/readyz`, 90_000);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
  page.setDefaultTimeout(TIMEOUT);
  const external = [];
  page.on("request", (req) => { if (!req.url().startsWith(base) && !req.url().startsWith("data:")) external.push(req.url()); });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(base);
  page.externalRequests = external;
});

after(async () => {
  if (browser) await browser.close();
  if (stack && stack.exitCode === null) {
    const exited = new Promise((r) => stack.once("exit", r));
    stack.kill("SIGINT");
    const timer = setTimeout(() => stack.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  }
});

test("the page loads everything from the app itself", async () => {
  await page.waitForLoadState("networkidle");
  assert.deepEqual(page.externalRequests, []);
  assert.equal(await page.title(), "cache-demo: PostgreSQL vs Redis");
});

test("live stats come from the server", async () => {
  await page.waitForFunction(() => document.getElementById("policy").innerText === "allkeys-lru");
  assert.equal(await text("#circuit"), "closed");
  assert.match(await text("#patterns"), /single-flight on · stampede lock off · TTL jitter ±10% · circuit breaker on · L1 off/);
  assert.ok(await page.locator("#token-row").isVisible(), "the token field shows when the app requires one");
  assert.match(await text("#memory"), /^\d+(\.\d+)?[KMG]? \/ 64\.00M$/);
  assert.match(await text("#redis-status"), /up/);
  assert.match(await text("#hits"), /^\d+$/);
  const before = await text("#stats-updated");
  await page.waitForFunction((b) => document.getElementById("stats-updated").innerText !== b, before);
});

test("a single comparison shows two positive times, and a speedup only for a hit", async () => {
  await page.selectOption("#endpoint", "categories");
  for (const outcome of ["MISS", "HIT"]) {
    await page.click("#run-compare");
    await page.waitForFunction((o) => document.getElementById("compare-outcome").innerText.includes(o), outcome);
    assert.ok((await number("#compare-db-ms")) > 0, "database time");
    assert.ok((await number("#compare-cache-ms")) > 0, "cache time");
    if (outcome === "MISS") assert.equal(await text("#compare-speedup"), "no speedup: the cache missed");
    else assert.match(await text("#compare-speedup"), /^\d+(\.\d)?×$/);
  }
  assert.match(await text("#compare-note"), /Served from Redis key cache-demo:categories:stats/);
});

test("the TTL of the chosen key counts down", async () => {
  await page.waitForFunction(() => /^\d+ s$/.test(document.getElementById("ttl-value").innerText));
  assert.equal(await text("#ttl-key"), "cache-demo:categories:stats");
  const first = await number("#ttl-value");
  assert.ok(first > 0 && first <= 66, `TTL ${first}: 60 s ± 10% jitter`);
  await page.waitForFunction((f) => parseInt(document.getElementById("ttl-value").innerText, 10) < f, first, { timeout: 5_000 });
});

test("a load test draws a bar per path and round, and percentiles", async () => {
  await page.selectOption("#endpoint", "search");
  await page.fill("#query", "headphones");
  await page.selectOption("#rounds", "10");
  await page.click("#run-load");
  await page.waitForFunction(() => document.querySelectorAll("#chart rect.bar-db").length === 10);
  assert.equal(await page.locator("#chart rect.bar-cache").count(), 10);
  for (const row of ["db", "cache"]) {
    const cells = await page.locator(`#summary tr.${row} td`).allInnerTexts();
    assert.equal(cells.length, 4);
    cells.forEach((c) => assert.match(c, /^\d+(\.\d+)? ms$/));
  }
  await page.check("#log-scale");
  assert.equal(await page.locator("#chart rect.bar-db").count(), 10, "log scale redraws the same bars");
  assert.match(await text("#load-caption"), /\/api\/products\?q=headphones&limit=20: 10 rounds/);
  // The load test filled the key, so a comparison now shows a hit next to the chart.
  await page.click("#run-compare");
  await page.waitForFunction(() => document.getElementById("compare-outcome").innerText.includes("HIT"));
  await page.screenshot({ path: screenshot, fullPage: true });
});

test("recent requests list what the app served", async () => {
  await page.waitForFunction(() => document.querySelectorAll("#recent tbody tr").length >= 3);
  const rows = await page.locator("#recent tbody tr").allInnerTexts();
  assert.ok(rows.some((r) => r.includes("POST /api/load-test")), rows.join("\n"));
  assert.ok(rows.some((r) => r.includes("GET /api/compare?endpoint=categories")), rows.join("\n"));
});

test("flush empties the cache and resets the hit counter", async () => {
  await page.waitForFunction(() => Number(document.getElementById("hits").innerText.replace(/,/g, "")) > 0);
  await page.fill("#admin-token", "wrong");
  await page.click("#flush");
  await page.waitForFunction(() => document.getElementById("message").innerText.includes("admin token"));
  assert.ok(Number((await text("#hits")).replace(/,/g, "")) > 0, "a refused flush deletes nothing");
  await page.fill("#admin-token", ADMIN_TOKEN);
  await page.click("#flush");
  await page.waitForFunction(() => document.getElementById("message").innerText.startsWith("Flushed"));
  await page.waitForFunction(() => document.getElementById("hits").innerText === "0");
  assert.equal(await text("#keys"), "0");
  await page.selectOption("#endpoint", "categories");
  await page.waitForFunction(() => document.getElementById("ttl-value").innerText === "not cached");
});

test("the keyboard runs a comparison and the next request visibly misses", async () => {
  await page.focus("#run-compare");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("compare-outcome").innerText.includes("MISS"));
});

test("bad input shows a clear error", async () => {
  await page.selectOption("#endpoint", "product");
  await page.fill("#product-id", "999999");
  await page.click("#run-compare");
  await page.waitForFunction(() => document.getElementById("message").innerText.includes("not found"));
  assert.ok(await page.locator("#message.error").isVisible());
});

test("a phone-sized screen needs no horizontal scrolling", async () => {
  await page.setViewportSize({ width: 375, height: 800 });
  await page.selectOption("#endpoint", "categories");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-phone.png"), fullPage: true });
});
