// The staleness lab in headless Chromium, on a stack of its own with a 4 s TTL and no jitter, so the naive
// write's stale price visibly ends within seconds.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, openPage, screenshot } from "./stack.mjs";

const ADMIN_TOKEN = "staleness-test-token";
const TTL_SECS = 4;

let stack, browser, page;

before(async () => {
  stack = await startStack({
    env: { CACHE_TTL_SECS: String(TTL_SECS), CACHE_TTL_JITTER_PCT: "0", ADMIN_TOKEN },
  });
  ({ browser, page } = await openPage(stack.base));
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

const naive = "#stale-naive";
const viaApi = "#stale-api";
const text = (sel) => page.locator(sel).innerText();
const waitText = (sel, re, timeout) => page.waitForFunction(
  ([s, src]) => new RegExp(src).test(document.querySelector(s).innerText), [sel, re.source], { timeout });

test("both sides show their key and the database price", async () => {
  await waitText(`${naive} .stale-key`, /^cache-demo:product:1$/);
  await waitText(`${viaApi} .stale-key`, /^cache-demo:product:2$/);
  assert.match(await text(`${naive} .stale-db`), /^\d+\.\d\d$/);
  assert.match(await text(`${viaApi} .stale-db`), /^\d+\.\d\d$/);
});

test("a side whose first status fails says so and shows it once it comes", async () => {
  // The app is ready before Redis answers; here the first staleness reads fail as they would then.
  const other = await browser.newPage();
  let refused = 0;
  await other.route("**/api/labs/staleness?*", (route) => {
    if (refused < 2) {
      refused += 1;
      return route.fulfill({ status: 503, contentType: "application/json", body: '{"error":"cache unavailable"}' });
    }
    return route.continue();
  });
  try {
    await other.goto(stack.base);
    await other.waitForFunction(
      () => /staleness unavailable/.test(document.querySelector("#stale-naive .verdict").innerText), null,
      { timeout: 15_000 });
    await other.waitForFunction(
      () => document.querySelector("#stale-naive .stale-key").innerText === "cache-demo:product:1", null,
      { timeout: 15_000 });
    assert.equal(refused, 2);
    assert.doesNotMatch(await other.locator("#stale-naive .verdict").innerText(), /unavailable/);
  } finally {
    await other.close();
  }
});

test("a write without the admin token is refused and asks for it", async () => {
  await page.click(`${naive} .stale-write`);
  await waitText(`${naive} .verdict`, /admin token/);
  assert.ok(await page.locator("#admin-token").isVisible());
  assert.equal(await page.evaluate(() => document.activeElement.id), "admin-token");
  await page.fill("#admin-token", ADMIN_TOKEN);
});

test("the naive write is served stale until the TTL ends; the API write is fresh at once", async () => {
  await page.fill(`${naive} .stale-price`, "123.45");
  await page.fill(`${viaApi} .stale-price`, "234.56");
  await page.click(`${naive} .stale-write`);
  await page.click(`${viaApi} .stale-write`);

  // Naive: Redis still holds the old price, with the TTL counting down.
  await waitText(`${naive} .verdict`, /^Stale: the cache serves \d+\.\d\d while PostgreSQL has 123\.45, for \d s more/);
  assert.match(await text(`${naive} .stale-cached`), /\(stale\)$/);
  assert.match(await text(`${naive} .stale-ttl`), /^[1-4] s$/);
  assert.equal(await text(`${naive} .stale-db`), "123.45");
  assert.match(await text(`${naive} .events`), /wrote 123\.45 to PostgreSQL only; cache-demo:product:1 kept/);

  // Through the API: the write removed the key, so the first read misses and is fresh.
  await waitText(`${viaApi} .verdict`, /^Fresh from the first read after the write: MISS 234\.56/);
  assert.match(await text(`${viaApi} .events`), /it removed [^\n]*cache-demo:product:2/);
  await screenshot(page, "staleness", "#stale-panel");

  // Within the TTL (plus a poll and a margin) the naive side turns fresh, from PostgreSQL.
  await waitText(`${naive} .verdict`, /^Fresh at .*, \d+\.\d s after the write: MISS 123\.45, after \d+ stale reads? of/,
    (TTL_SECS + 4) * 1000);
  const after = Number((await text(`${naive} .verdict`)).match(/, (\d+\.\d) s after/)[1]);
  assert.ok(after > 1 && after <= TTL_SECS + 2, `fresh ${after} s after the write, with a ${TTL_SECS} s TTL`);
  assert.match(await text(`${naive} .stale-cached`), /^123\.45$/);
  await screenshot(page, "staleness-fresh", "#stale-panel");
});
