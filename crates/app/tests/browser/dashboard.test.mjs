// The dashboard in headless Chromium against the app on a throwaway local stack (cache-demo-stack).
// Run with `make test-browser`; it saves a screenshot to target/dashboard.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { root, startStack, openPage } from "./stack.mjs";

const screenshot = process.env.SCREENSHOT || path.join(root, "target", "dashboard.png");
// As in Kubernetes, where the Secret sets one: flushing needs it.
const ADMIN_TOKEN = "dashboard-test-token";

let stack, browser, page;

const text = (sel) => page.locator(sel).innerText();
const number = async (sel) => Number((await text(sel)).replace(/[^0-9.]/g, ""));

before(async () => {
  stack = await startStack({ env: { CACHE_TTL_SECS: "60", ADMIN_TOKEN } });
  ({ browser, page } = await openPage(stack.base));
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
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
