// The experiments in headless Chromium against two app replicas on one throwaway stack: the fleet's numbers,
// the artificial database delay, the stampede lab, the live charts and the eviction lab.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, openPage, screenshot, num } from "./stack.mjs";

const ADMIN_TOKEN = "labs-test-token";

let stack, browser, page;

before(async () => {
  stack = await startStack({ env: { CACHE_TTL_SECS: "60", ADMIN_TOKEN }, replicas: 2 });
  ({ browser, page } = await openPage(stack.base));
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

const text = (sel) => page.locator(sel).innerText();
const waitText = (sel, re, timeout) => page.waitForFunction(
  ([s, src]) => new RegExp(src).test(document.querySelector(s).innerText), [sel, re.source], { timeout });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("the page loads only its own files and breaks no Content-Security-Policy rule", async () => {
  await page.waitForLoadState("networkidle");
  assert.deepEqual(page.externalRequests, []);
  assert.deepEqual(page.cspViolations, []);
});

test("the stat boxes add up both replicas, one table row each, and recent requests name the replica", async () => {
  // Reads on the second replica only: they reach the page through the fleet figures.
  for (const id of [1, 2, 3]) {
    for (let i = 0; i < 2; i++) await fetch(`${stack.bases[1]}/api/products/${id}`);
  }
  await fetch(`${stack.bases[0]}/api/products/4`);
  await page.waitForFunction(() => document.querySelectorAll("#replicas tbody tr").length === 2, null, { timeout: 10_000 });
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#replicas tbody tr")].map((r) => r.cells[0].innerText);
    return rows.some((r) => r.startsWith("replica-b")) && rows.some((r) => r.startsWith("replica-a"));
  });
  await waitText("#replicas-caption", /2 reporting through Redis/);
  // Each replica reports every ~2 s: wait for replica-b's reads to be in its row.
  await page.waitForFunction(() => [...document.querySelectorAll("#replicas tbody tr")]
    .some((r) => r.cells[0].innerText.startsWith("replica-b") && Number(r.cells[1].innerText) >= 3
      && Number(r.cells[2].innerText) >= 3), null, { timeout: 10_000 });
  // Rows and boxes come from one /api/stats answer: the boxes are the sum of the rows.
  const figures = await page.evaluate(() => ({
    boxes: ["hits", "misses"].map((id) => document.getElementById(id).innerText),
    rows: [...document.querySelectorAll("#replicas tbody tr")].map((r) => [r.cells[1].innerText, r.cells[2].innerText]),
  }));
  const sum = (i) => figures.rows.reduce((a, r) => a + Number(r[i].replace(/,/g, "")), 0);
  assert.equal(Number(figures.boxes[0].replace(/,/g, "")), sum(0), JSON.stringify(figures));
  assert.equal(Number(figures.boxes[1].replace(/,/g, "")), sum(1), JSON.stringify(figures));
  assert.match(await text("#replicas tbody"), /replica-a \(answered this page\)/);

  // Recent requests come from every replica, each naming the one that answered.
  assert.equal(await page.locator("#recent thead th").last().innerText(), "Replica");
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#recent tbody tr")].map((r) => r.innerText);
    return rows.some((r) => /GET \/api\/products\/3.*replica-b/s.test(r))
      && rows.some((r) => /GET \/api\/products\/4.*replica-a/s.test(r));
  }, null, { timeout: 10_000 });
  await screenshot(page, "replicas", "section[aria-labelledby=stats-title]");
});

test("the database delay is set from the page and labelled artificial wherever it shows", async () => {
  await page.click(".db-delay[data-ms='50']");
  await waitText("#db-delay-message", /admin token/);
  await page.fill("#admin-token", ADMIN_TOKEN);
  await page.click(".db-delay[data-ms='50']");
  await waitText("#db-delay-message", /artificial 50 ms/);
  await waitText("#delay-banner", /^Artificial: a delay of 50 ms/);
  assert.equal(await page.getAttribute(".db-delay[data-ms='50']", "aria-pressed"), "true");
  await waitText("#live-delay", /^Artificial: every database query counted here takes 50 ms longer/);
  await waitText("#recent-delay", /^The time of each request that queried PostgreSQL includes an artificial database delay of 50 ms per query\.$/);
  await page.selectOption("#endpoint", "top");
  await page.click("#run-compare");
  await waitText("#compare-note", /50 ms of the database time \(\d+%\) is the artificial database delay/);
  // Every replica takes the delay (through Redis).
  const start = Date.now();
  let other;
  while (Date.now() - start < 5_000) {
    other = await (await fetch(`${stack.bases[1]}/api/stats`)).json();
    if (other.db_delay_ms === 50) break;
    await sleep(250);
  }
  assert.equal(other.db_delay_ms, 50, "replica-b has the delay too");
});

test("a stampede from the keyboard: N requests, one database query with single-flight, more without", async () => {
  await page.selectOption("#stampede-endpoint", "categories");
  await page.selectOption("#stampede-requests", "50");
  await page.focus("#stampede-run");
  await page.keyboard.press("Enter");
  await waitText("#stampede-message", /^Done/, 30_000);
  assert.equal(await text("#stampede-on .stampede-headline"), "50 requests → 1 database query");
  const off = (await text("#stampede-off .stampede-headline")).match(/^50 requests → (\d+) database quer(y|ies)$/);
  assert.ok(off, await text("#stampede-off .stampede-headline"));
  assert.ok(Number(off[1]) > 1, `without single-flight ${off[1]} queries`);
  assert.match(await text("#stampede-on .stampede-detail"), /49 waited for another request's query/);
  assert.match(await text("#stampede-on .stampede-detail"), /artificial database delay of 50 ms/);
  assert.match(await text("#stampede-message"), /cache-demo:categories:stats/);
  assert.equal(await page.evaluate(() => document.activeElement.id), "stampede-run", "focus stays on the button");
  await screenshot(page, "stampede", "#stampede-panel");
  await page.click(".db-delay[data-ms='0']");
  await waitText("#db-delay-message", /No artificial delay/);
  await page.waitForFunction(() => document.getElementById("delay-banner").hidden);
});

test("the live charts plot hit ratio and rates, and a flush shows as a dip", async () => {
  await page.selectOption("#traffic-pattern", "hot");
  await page.selectOption("#traffic-seconds", "30");
  await page.click("#traffic-start");
  await waitText("#traffic-status", /hot traffic running/);
  // A few intervals of warm traffic: the hit ratio climbs close to 100%.
  await page.waitForFunction(() => [...document.querySelectorAll("#ratio-chart circle")]
    .some((c) => Number(c.dataset.value) > 0.9), null, { timeout: 15_000 });
  assert.ok(await page.locator("#rate-chart .cache circle").count() > 0, "hits per second plotted");
  assert.ok(await page.locator("#rate-chart .miss circle").count() > 0, "misses per second plotted");
  assert.ok(await page.locator("#rate-chart .dbq circle").count() > 0, "database queries per second plotted");
  await waitText("#ratio-summary", /^Hit ratio now \d+\.\d%/);
  await waitText("#live-caption", /2 replicas, summed/);

  // Warm: the last point before the flush hits (nearly) everything.
  await page.waitForFunction(() => {
    const pts = [...document.querySelectorAll("#ratio-chart circle")];
    return pts.length > 0 && Number(pts[pts.length - 1].dataset.value) > 0.98;
  }, null, { timeout: 25_000 });
  const flushedAt = Date.now();
  await page.click("#flush");
  await waitText("#message", /^Flushed/);
  // The page marks its own flush on both charts.
  await page.waitForFunction(() => [...document.querySelectorAll("#ratio-chart .mark text")].some((t) => t.textContent === "flush")
    && [...document.querySelectorAll("#rate-chart .mark text")].some((t) => t.textContent === "flush"));
  // After the flush every hot key misses once: some interval after it has a lower hit ratio than before.
  const dip = await page.waitForFunction((at) => {
    const pts = [...document.querySelectorAll("#ratio-chart circle")]
      .map((c) => ({ at: Number(c.dataset.at), v: Number(c.dataset.value) }));
    const before = pts.filter((p) => p.at <= at);
    const after = pts.filter((p) => p.at > at);
    if (before.length === 0 || after.length < 2) return false;
    const high = before[before.length - 1].v;
    const low = after.reduce((a, p) => (p.v < a.v ? p : a));
    return low.v < high - 0.01 ? { high, low: low.v } : false;
  }, flushedAt, { timeout: 25_000 });
  const { high, low } = await dip.jsonValue();
  assert.ok(low < high, `dip from ${high} to ${low}`);
  await screenshot(page, "live-charts", "#live-panel");
  await page.click("#traffic-stop");
  await waitText("#traffic-status", /Stopped/);
});

test("eviction: a smaller Redis evicts keys under uniform traffic and the hit ratio falls; restore undoes it", async () => {
  // Whatever an earlier test left running would make this one's traffic a 409.
  await fetch(`${stack.base}/api/labs/traffic`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  await waitText("#evict-policy", /^allkeys-lru$/);
  const configured = await text("#evict-configured");
  assert.equal(await text("#evict-max"), configured);
  // Uniform traffic at full size first, so there is a hit ratio to fall from.
  await page.click("#evict-traffic");
  await waitText("#evict-message", /Started 60 s of uniform traffic/);
  await sleep(8_000);
  const evictedBefore = num(await text("#evict-evicted"));
  // Every product takes about 0.4 MiB: 256 KiB less than Redis uses now holds a part of them.
  assert.equal(await page.inputValue("#evict-size"), "below", "the default choice");
  assert.match(await page.locator("#evict-size option:checked").innerText(), /^256 KiB less than Redis uses now \(\d\.\d\d MiB\)$/);
  await page.click("#evict-shrink");
  await waitText("#evict-message", /^Redis maxmemory is now \d\.\d\d MiB\. Watch evicted keys climb/);
  assert.notEqual(await text("#evict-max"), configured);
  await page.waitForFunction((b) => Number(document.getElementById("evict-evicted").innerText.replace(/,/g, "")) > b,
    evictedBefore, { timeout: 15_000 });
  // The explanation quotes the run's own figures: evicted keys, and the hit ratio before and since.
  await waitText("#evict-explain", /It fell by \d+\.\d points/, 20_000);
  const explain = await text("#evict-explain");
  assert.match(explain, /Redis has evicted [1-9][\d,]* keys? \(evicted_keys/);
  assert.match(explain, /What allkeys-lru did/);
  assert.doesNotMatch(explain, /failed since/, "Redis evicts rather than refusing writes");
  const [, before, since] = explain.match(/(\d+\.\d)% in the 10 s before shrinking, (\d+\.\d)% since/);
  assert.ok(Number(since) < Number(before), `hit ratio ${before}% → ${since}%`);
  await screenshot(page, "eviction", "#evict-panel");

  await page.click("#evict-restore");
  await waitText("#evict-message", /^Restored/);
  assert.equal(await text("#evict-max"), configured);
  await page.waitForFunction(() => document.getElementById("evict-restore").disabled, null, { timeout: 3_000 });
  await page.click("#traffic-stop");
  // Eviction may take the replicas' shared figures too; each replica publishes its own again within seconds.
  await waitText("#replicas-caption", /2 reporting through Redis/, 10_000);
  await screenshot(page, "dashboard");
});
