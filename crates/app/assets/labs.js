// cache-demo dashboard, part two: the live charts and the experiments (staleness, eviction, stampede).
// Loaded after app.js and uses its helpers ($, api, fmtMs, fmtInt, fmtPct, delayNote, svg, lastStats,
// statsListeners). Every figure comes from the server; the page only does arithmetic on what it was sent.
"use strict";

const LIVE_MS = 2000;
const STALE_POLL_MS = 1000;

// ---- small helpers -------------------------------------------------------------------------

function say(id, text, isError) {
  const el = $(id);
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(isError));
}

/** Runs `work` with `buttons` disabled; focus goes back to the button that started it. */
async function busy(buttons, origin, work) {
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await work();
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    refocus(origin);
  }
}

/** Focus back on `el`, unless it moved on meanwhile (api() sends it to the token field on a 401). */
function refocus(el) {
  const now = document.activeElement;
  if (el && (!now || now === document.body || now === el)) el.focus();
}

/** Tells screen readers what an action did; figures refreshed every 2 s are not announced. */
function announce(text) {
  $("lab-announce").textContent = text;
}

function fmtBytes(v) {
  if (v == null) return "–";
  if (v >= 1024 * 1024) return `${(v / (1024 * 1024)).toFixed(2)} MiB`;
  if (v >= 1024) return `${(v / 1024).toFixed(v % 1024 ? 1 : 0)} KiB`;
  return `${v} B`;
}

/** A maxmemory: 0 means Redis has no limit. */
function fmtLimit(v) {
  return v === 0 ? "no limit" : fmtBytes(v);
}

function fmtPrice(v) {
  return v == null ? "–" : Number(v).toFixed(2);
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString();
}

function plural(n, one, many) {
  return `${fmtInt(n)} ${n === 1 ? one : many}`;
}

function postJson(path, body, method = "POST") {
  return api(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

// ---- live charts ---------------------------------------------------------------------------

let timeline = null;
// What this page did, drawn on the charts where it happened: [{ at (browser clock, ms), label }].
const chartMarks = [];

/** Marks an action of this page (a flush, a shrink, ...) on the charts. */
function markChart(label) {
  chartMarks.push({ at: Date.now(), label });
  if (chartMarks.length > 20) chartMarks.shift();
  drawTimeline();
}

/** A round upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((c) => c >= v);
}

/**
 * One time-series chart of the timeline's points. `series`: [{cls, name, value(point) -> number|null, fmt}].
 * A null value breaks the line (an interval with nothing to measure), it is never drawn as zero.
 */
function drawLive(chart, points, windowSecs, series, scale) {
  chart.replaceChildren();
  const W = Math.max(200, chart.clientWidth), H = 170, left = 56, right = 10, top = 8, bottom = 20;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const plotW = W - left - right, plotH = H - top - bottom;
  // The server's clock for both ends, so the browser's clock cannot shift the picture.
  const end = points.length ? points[points.length - 1].at_ms : Date.now();
  const start = end - windowSecs * 1000;
  const x = (t) => left + ((t - start) / (end - start)) * plotW;
  const y = (v) => top + plotH - (Math.min(v, scale.max) / scale.max) * plotH;
  for (const t of scale.ticks) {
    chart.appendChild(svg("line", { x1: left, x2: W - right, y1: y(t), y2: y(t) }));
    chart.appendChild(svg("text", { x: left - 4, y: y(t) + 4, "text-anchor": "end" }, scale.fmt(t)));
  }
  // Labels end at their line; one close to the previous goes a row lower, so none covers another.
  let prev = null;
  for (const mark of chartMarks) {
    if (mark.at < start || mark.at > end + LIVE_MS) continue;
    const mx = Math.min(x(mark.at), W - right);
    const row = prev && mx - prev.x < 6.5 * mark.label.length + 6 ? (prev.row + 1) % 5 : 0;
    prev = { x: mx, row };
    const g = svg("g", { class: "mark" });
    g.appendChild(svg("line", { x1: mx, x2: mx, y1: top, y2: top + plotH }));
    g.appendChild(svg("text", { x: mx - 3, y: top + 10 + 12 * row, "text-anchor": "end" }, mark.label));
    chart.appendChild(g);
  }
  for (let m = Math.floor(windowSecs / 60); m >= 0; m--) {
    chart.appendChild(svg("text", { x: x(end - m * 60_000), y: H - 4, "text-anchor": m === 0 ? "end" : "middle" },
      m === 0 ? "now" : `−${m} min`));
  }
  for (const s of series) {
    let d = "";
    let pen = false;
    const group = svg("g", { class: `series ${s.cls}` });
    for (const p of points) {
      const v = s.value(p);
      if (v == null || !isFinite(v)) { pen = false; continue; }
      const px = x(p.at_ms).toFixed(1), py = y(v).toFixed(1);
      d += `${pen ? "L" : "M"}${px},${py}`;
      pen = true;
      const dot = svg("circle", { class: "pt", cx: px, cy: py, r: 2, "data-at": p.at_ms, "data-value": v });
      dot.appendChild(svg("title", {}, `${clock(p.at_ms)} ${s.name}: ${s.fmt(v)}`));
      group.appendChild(dot);
    }
    group.prepend(svg("path", { d }));
    chart.appendChild(group);
  }
}

/** The mean of the server's 2 s hit ratios in (from, to]; null when none had a lookup. */
function ratioOver(points, from, to) {
  const r = points.filter((p) => p.at_ms > from && p.at_ms <= to && p.hit_ratio != null).map((p) => p.hit_ratio);
  return r.length ? r.reduce((a, b) => a + b, 0) / r.length : null;
}

function drawTimeline() {
  if (!timeline) return;
  const pts = timeline.points || [];
  const win = timeline.window_secs || 300;
  drawLive($("ratio-chart"), pts, win, [
    { cls: "cache", name: "hit ratio", value: (p) => p.hit_ratio, fmt: (v) => fmtPct(v) },
  ], { max: 1, ticks: [0, 0.25, 0.5, 0.75, 1], fmt: (v) => fmtPct(v, 0) });
  const peak = Math.max(0, ...pts.map((p) => Math.max(p.hits_per_sec, p.misses_per_sec, p.db_queries_per_sec)));
  const max = niceCeil(peak);
  const perSec = (v) => `${v < 10 ? v.toFixed(1) : v.toFixed(0)}/s`;
  drawLive($("rate-chart"), pts, win, [
    { cls: "cache", name: "hits", value: (p) => p.hits_per_sec, fmt: perSec },
    { cls: "miss", name: "misses", value: (p) => p.misses_per_sec, fmt: perSec },
    { cls: "dbq", name: "database queries", value: (p) => p.db_queries_per_sec, fmt: perSec },
  ], { max, ticks: [0, max / 2, max], fmt: perSec });

  const who = timeline.aggregated
    ? `${plural(timeline.replicas, "replica", "replicas")}, summed`
    : "this replica only: Redis is unreachable";
  $("live-caption").textContent = `${who}; ${plural(pts.length, "point", "points")}`;
  const measured = pts.filter((p) => p.hit_ratio != null);
  const last = pts[pts.length - 1];
  if (measured.length === 0) {
    $("ratio-summary").textContent = "No cache lookups in the window yet: read something, or start background traffic.";
  } else {
    const low = measured.reduce((a, b) => (b.hit_ratio < a.hit_ratio ? b : a));
    const now = last.hit_ratio == null ? "no lookups in the last 2 s" : `now ${fmtPct(last.hit_ratio)}`;
    $("ratio-summary").textContent = `Hit ratio ${now}; lowest in the window ${fmtPct(low.hit_ratio)} at ${clock(low.at_ms)}.`;
  }
  $("rate-summary").textContent = last
    ? `Last 2 s: ${perSec(last.hits_per_sec)} hits, ${perSec(last.misses_per_sec)} misses, ` +
      `${perSec(last.db_queries_per_sec)} database queries.`
    : "";
  const delay = lastStats && lastStats.db_delay_ms;
  $("live-delay").hidden = !delay;
  if (delay) {
    $("live-delay").textContent = `Artificial: every database query counted here takes ${delay} ms longer than it ` +
      "really does (the database delay above), so misses are slower to answer.";
  }
}

async function refreshTimeline() {
  try {
    timeline = await api("/api/timeline");
  } catch (e) {
    $("live-caption").textContent = `timeline unavailable: ${e.message}`;
    return;
  }
  drawTimeline();
  if (evictRun) renderEvictExplain();
}

// ---- background traffic --------------------------------------------------------------------

let traffic = null;

function trafficText(t) {
  if (!t) return "";
  const counts = `${fmtInt(t.requests)} requests (${fmtInt(t.hits)} hits, ${fmtInt(t.misses)} misses, ` +
    `${fmtInt(t.errors)} errors)`;
  if (t.running) {
    return `${t.pattern} traffic running: ${(t.elapsed_ms / 1000).toFixed(0)} s, ${(t.remaining_ms / 1000).toFixed(0)} s ` +
      `left, ${counts}, at most ${fmtInt(t.rate_limit_per_sec)} requests/s.`;
  }
  return t.pattern ? `Last ${t.pattern} traffic: ${counts}. None running now.` : "No background traffic running.";
}

async function refreshTraffic() {
  try {
    traffic = await api("/api/labs/traffic");
    if (!$("traffic-status").classList.contains("error")) say("traffic-status", trafficText(traffic));
    $("traffic-stop").disabled = !traffic.running;
  } catch (e) {
    say("traffic-status", `traffic status unavailable: ${e.message}`, true);
  }
}

async function startTraffic(pattern, seconds, outId) {
  traffic = await postJson("/api/labs/traffic", { pattern, seconds });
  say("traffic-status", trafficText(traffic));
  announce(`Started ${seconds} s of ${pattern} traffic.`);
  markChart(`${pattern} traffic`);
  if (outId) say(outId, `Started ${seconds} s of ${pattern} traffic: watch the charts above.`);
}

/** Runs a traffic action with its buttons disabled; then Stop is enabled only while traffic runs. */
async function trafficBusy(origin, work) {
  await busy([$("traffic-start"), $("traffic-stop")], origin, work);
  $("traffic-stop").disabled = !(traffic && traffic.running);
}

$("traffic-start").addEventListener("click", (e) => trafficBusy(e.currentTarget, async () => {
  say("traffic-status", "");
  try {
    await startTraffic($("traffic-pattern").value, Number($("traffic-seconds").value));
  } catch (err) {
    say("traffic-status", err.message, true);
    announce(err.message);
  }
}));

$("traffic-stop").addEventListener("click", (e) => trafficBusy($("traffic-start"), async () => {
  try {
    traffic = await api("/api/labs/traffic", { method: "DELETE" });
    say("traffic-status", `Stopped. ${trafficText(traffic)}`);
    announce(`Traffic stopped after ${fmtInt(traffic.requests)} requests.`);
  } catch (err) {
    say("traffic-status", err.message, true);
    announce(err.message);
  }
}));

// ---- staleness lab -------------------------------------------------------------------------

/** Reads a product through the cache, like any client: what is served, and X-Cache. */
async function readThrough(id) {
  const res = await fetch(`/api/products/${id}`, { cache: "no-store" });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error(body && body.error ? body.error : `HTTP ${res.status}`);
  return { xCache: res.headers.get("x-cache") || "?", price: fmtPrice(body.data.price), at: Date.now() };
}

function makeSide(rootId, id, write) {
  const root = $(rootId);
  const q = (cls) => root.querySelector(`.${cls}`);
  return { root, id, write, q, status: null, statusAt: 0, configuredTtl: null, run: null, timer: null };
}

const stale = {
  naive: makeSide("stale-naive", 1, (side, price) =>
    postJson("/api/labs/staleness/naive-write", { id: side.id, price: Number(price) })),
  api: makeSide("stale-api", 2, (side, price) =>
    postJson(`/api/products/${side.id}`, { price: Number(price) }, "PUT")),
};

function staleEvent(side, text) {
  const li = document.createElement("li");
  const t = side.run ? `+${((Date.now() - side.run.writtenAt) / 1000).toFixed(1)} s` : clock(Date.now());
  li.textContent = `${t}  ${text}`;
  side.q("events").appendChild(li);
}

async function refreshStaleStatus(side) {
  side.status = await api(`/api/labs/staleness?id=${side.id}`);
  side.statusAt = Date.now();
  if (side.configuredTtl == null) {
    try {
      const t = await api(`/api/ttl?endpoint=product&id=${side.id}`);
      side.configuredTtl = t.configured_ttl_secs;
    } catch (_) { /* the bar stays empty */ }
  }
  const input = side.q("stale-price");
  if (!input.value) input.value = (Number(side.status.database_price) + 1).toFixed(2);
  renderStale(side);
}

function ttlLeftMs(side) {
  const s = side.status;
  if (!s || !s.cached || s.ttl_ms == null) return null;
  return Math.max(0, s.ttl_ms - (Date.now() - side.statusAt));
}

function renderStale(side) {
  const s = side.status;
  if (!s) return;
  side.q("stale-key").textContent = s.key;
  side.q("stale-db").textContent = fmtPrice(s.database_price);
  side.q("stale-cached").textContent = s.cached
    ? `${fmtPrice(s.cached_price)}${s.stale ? " (stale)" : ""}`
    : "nothing (not cached)";
  const left = ttlLeftMs(side);
  side.q("stale-ttl").textContent = left == null ? "–" : `${Math.ceil(left / 1000)} s`;
  const fill = side.q("stale-fill");
  fill.style.width = left == null || !side.configuredTtl
    ? "0" : `${Math.min(100, left / (10 * side.configuredTtl))}%`;
  fill.classList.toggle("stale", Boolean(s.stale));
  const run = side.run;
  if (run && run.lastRead) {
    side.q("stale-read").textContent = `${run.lastRead.xCache} ${run.lastRead.price} at ${clock(run.lastRead.at)}`;
  }
  if (!run || !run.lastRead) return;
  let verdict;
  if (run.freshAt) {
    const after = ((run.freshAt - run.writtenAt) / 1000).toFixed(1);
    const why = run.freshRead.xCache === "MISS" ? `: ${s.key} was not in Redis, so the read went to PostgreSQL` : "";
    verdict = run.staleReads === 0
      ? `Fresh from the first read after the write: ${run.freshRead.xCache} ${run.newPrice}${why}.`
      : `Fresh at ${clock(run.freshAt)}, ${after} s after the write: ${run.freshRead.xCache} ${run.newPrice}, ` +
        `after ${plural(run.staleReads, "stale read", "stale reads")} of ${run.oldPrice}.`;
  } else if (left != null && s.stale) {
    verdict = `Stale: the cache serves ${run.lastRead.price} while PostgreSQL has ${fmtPrice(s.database_price)}, ` +
      `for ${Math.ceil(left / 1000)} s more (until the TTL ends).`;
  } else {
    verdict = `Read ${run.lastRead.xCache} ${run.lastRead.price}; PostgreSQL has ${fmtPrice(s.database_price)}.`;
  }
  const v = side.q("verdict");
  if (v.textContent !== verdict) v.textContent = verdict;
  v.classList.toggle("stale", !run.freshAt);
  v.classList.toggle("fresh", Boolean(run.freshAt));
}

async function pollStale(side) {
  const run = side.run;
  try {
    const read = await readThrough(side.id);
    if (side.run !== run) return; // a new write started meanwhile
    run.lastRead = read;
    await refreshStaleStatus(side);
    if (read.price === run.newPrice) {
      if (!run.freshAt) {
        run.freshAt = read.at;
        run.freshRead = read;
        staleEvent(side, `read: ${read.xCache} ${read.price}: fresh.`);
        side.q("announce").textContent = `Product ${side.id} is fresh: ${read.xCache} ${read.price}, ` +
          `${((read.at - run.writtenAt) / 1000).toFixed(1)} s after the write.`;
      }
      run.freshReads += 1;
    } else {
      run.staleReads += 1;
      if (run.staleReads === 1) {
        staleEvent(side, `read: ${read.xCache} ${read.price}: stale, PostgreSQL has ${run.newPrice}.`);
        side.q("announce").textContent = `Product ${side.id} is stale: the cache serves ${read.price}, ` +
          `PostgreSQL has ${run.newPrice}.`;
      }
    }
    renderStale(side);
  } catch (e) {
    staleEvent(side, `read failed: ${e.message}`);
  }
  // Three fresh reads close the run; a run never polls longer than the longest TTL allowed plus a margin.
  const giveUp = Date.now() - run.writtenAt > 1000 * ((side.configuredTtl || 86_400) * 1.5 + 5);
  if (side.run === run && run.freshReads < 3 && !giveUp) {
    side.timer = setTimeout(() => pollStale(side), STALE_POLL_MS);
  } else if (side.run === run) {
    side.timer = null;
  }
}

async function staleWrite(side) {
  const button = side.q("stale-write");
  const price = side.q("stale-price").value;
  if (price === "" || !(Number(price) >= 0)) {
    side.q("verdict").textContent = side.q("announce").textContent = "Enter a price of at least 0.";
    side.q("stale-price").focus();
    return;
  }
  clearTimeout(side.timer);
  side.run = null;
  button.disabled = true;
  side.q("events").replaceChildren();
  side.q("verdict").textContent = "";
  try {
    // The entry is read first, so the cache holds the current price when the write happens.
    const before = await readThrough(side.id);
    staleEvent(side, `read before the write: ${before.xCache} ${before.price} (now in ${side.status ? side.status.key : "Redis"}).`);
    if (before.price === fmtPrice(price)) {
      throw new Error(`The price is already ${before.price}: choose another one.`);
    }
    const writtenAt = Date.now();
    const result = await side.write(side, price);
    side.run = { writtenAt, oldPrice: before.price, newPrice: fmtPrice(price), lastRead: null, freshAt: null,
      freshRead: null, staleReads: 0, freshReads: 0 };
    if (result.invalidated && typeof result.invalidated === "object") {
      // The response names keys after the prefix (product:2); the page shows full names, like redis-cli.
      const own = side.status ? side.status.key : "";
      const prefix = own.endsWith(`product:${side.id}`) ? own.slice(0, own.length - `product:${side.id}`.length) : "";
      const keys = (result.invalidated.keys || []).map((k) => prefix + k);
      staleEvent(side, `wrote ${fmtPrice(price)} through the API; it removed ${keys.length ? keys.join(", ") : "no cached keys"}.`);
    } else {
      const ttl = result.ttl_ms == null ? "no entry" : `${Math.ceil(result.ttl_ms / 1000)} s of TTL left`;
      staleEvent(side, `wrote ${fmtPrice(price)} to PostgreSQL only; ${result.key} kept (${ttl}).`);
    }
    side.q("stale-price").value = (Number(price) + 1).toFixed(2);
    pollStale(side);
  } catch (e) {
    side.q("verdict").textContent = e.message;
    side.q("announce").textContent = e.message;
  } finally {
    button.disabled = false;
    refocus(button);
  }
}

for (const side of Object.values(stale)) {
  side.root.querySelectorAll(".stale-id").forEach((el) => { el.textContent = String(side.id); });
  side.q("stale-write").addEventListener("click", () => staleWrite(side));
  loadStaleStatus(side);
}

// The first status of a side, asked again every 2 s until it comes: Redis may connect after the page loaded
// (the app is ready without it), and the panel has nothing to show before.
const STALE_UNAVAILABLE = "staleness unavailable";
async function loadStaleStatus(side) {
  const verdict = side.q("verdict");
  try {
    await refreshStaleStatus(side);
    if (verdict.textContent.startsWith(STALE_UNAVAILABLE)) verdict.textContent = "";
  } catch (e) {
    verdict.textContent = `${STALE_UNAVAILABLE}: ${e.message}; trying again`;
    setTimeout(() => loadStaleStatus(side), 2000);
  }
}
setInterval(() => Object.values(stale).forEach(renderStale), 500);

// ---- eviction lab --------------------------------------------------------------------------

let eviction = null;
// What the page saw when it shrank Redis: the figures its explanation compares against.
let evictRun = null;
const MIB = 1024 * 1024;
// Redis itself takes 1.2 MiB or more with no keys at all (more with more clients); below that it refuses every
// write instead of evicting. So the first choice is relative: a little less than Redis uses once every product
// is cached, whatever its own share.
const EVICT_BELOW = 256 * 1024;
const EVICT_SIZES = [1.25, 1.5, 2, 4, 8, 16].map((m) => m * MIB);
// "Before" is the last few points before the shrink: after the traffic's own warm-up, if it ran long enough.
const HIT_WINDOW_MS = 10_000;

function renderEviction(e) {
  $("evict-used").textContent = fmtBytes(e.used_memory);
  $("evict-max").textContent = fmtLimit(e.maxmemory);
  // The configured size is remembered only while shrunk; otherwise it is the current one.
  const configured = e.shrunk ? e.configured_maxmemory : e.maxmemory;
  $("evict-configured").textContent = fmtLimit(configured);
  $("evict-evicted").textContent = fmtInt(e.evicted_keys);
  $("evict-policy").textContent = e.policy;
  $("evict-products").textContent = fmtInt(e.products);
  const fill = $("evict-fill");
  fill.style.width = e.maxmemory ? `${Math.min(100, (100 * e.used_memory) / e.maxmemory)}%` : "0";
  fill.classList.toggle("full", Boolean(e.maxmemory) && e.used_memory >= 0.95 * e.maxmemory);
  const ceiling = configured || Infinity;
  const sizes = ["below", ...EVICT_SIZES.filter((b) => b >= (e.min_bytes || MIB) && b < ceiling).map(String)];
  const select = $("evict-size");
  const have = [...select.options].map((o) => o.value);
  if (have.join() !== sizes.join()) {
    const chosen = select.value || "below";
    select.replaceChildren(...sizes.map((v) => {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = v === "below" ? "" : fmtBytes(Number(v));
      o.selected = v === chosen;
      return o;
    }));
  }
  select.options[0].textContent = `${fmtBytes(EVICT_BELOW)} less than Redis uses now (${fmtBytes(e.used_memory)})`;
  $("evict-restore").disabled = !e.shrunk;
}

async function refreshEviction() {
  try {
    eviction = await api("/api/labs/eviction");
    renderEviction(eviction);
    if (evictRun) renderEvictExplain();
  } catch (err) {
    say("evict-message", `eviction figures unavailable: ${err.message}`, true);
  }
}

function para(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function renderEvictExplain() {
  const e = eviction, run = evictRun;
  if (!e || !run) return;
  const pts = (timeline && timeline.points) || [];
  const end = run.restoredAt || Infinity;
  const evicted = (run.restoredEvicted != null ? run.restoredEvicted : e.evicted_keys) - run.evictedBefore;
  // Only whole intervals after the shrink count as "after"; the timeline is every replica's traffic.
  const after = ratioOver(pts, run.at + LIVE_MS, end);
  const before = run.ratioBefore;
  const out = [];
  out.push(para(`At ${clock(run.at)} Redis' maxmemory went from ${fmtLimit(run.from)} to ${fmtLimit(run.to)} ` +
    `(${fmtBytes(run.usedBefore)} were in use). Since then Redis has evicted ${plural(evicted, "key", "keys")} ` +
    `(evicted_keys ${fmtInt(run.evictedBefore)} → ${fmtInt(run.evictedBefore + evicted)})` +
    (run.restoredAt ? `, until the size was restored at ${clock(run.restoredAt)}.` :
      `; used memory is ${fmtBytes(e.used_memory)} of ${fmtBytes(e.maxmemory)}.`)));
  const ratioText = (r) => (r == null ? "no lookups" : fmtPct(r));
  let change = `Hit ratio of all traffic (the mean of the timeline's 2 s ratios): ${ratioText(before)} in the ` +
    `10 s before shrinking, ${ratioText(after)} since${run.restoredAt ? ", until the restore" : ""}.`;
  if (before != null && after != null && after < before) {
    change += ` It fell by ${((before - after) * 100).toFixed(1)} points.`;
  }
  out.push(para(change));
  const errors = cacheErrors() - run.errorsBefore;
  if (errors > 0) {
    out.push(para(`${plural(errors, "cache lookup or fill", "cache lookups or fills")} failed since: when Redis' own ` +
      "memory (connections, buffers) is above maxmemory even with no keys left, it refuses writes (OOM) instead " +
      "of evicting, and the app answers from PostgreSQL. A larger size shows eviction itself."));
  }
  if (e.policy === "allkeys-lru") {
    out.push(para("What allkeys-lru did: whenever storing an entry would take Redis past maxmemory, Redis first " +
      "deletes keys, chosen among all keys (TTL or not) as the least recently used of a small random sample. " +
      `Under uniform traffic each of the ${fmtInt(e.products)} products is as likely to be read next as any ` +
      "other, so there is no cold key to give up: every evicted entry is soon asked for again, misses, is loaded " +
      "from PostgreSQL and stored, which evicts another. " +
      (evicted > 0 ? `That is where the ${plural(evicted, "eviction", "evictions")} above come from` : "Nothing was evicted yet") +
      ". With the hot pattern, the few keys read most stay recently used and survive, so the same small memory " +
      "still serves most reads."));
  } else {
    out.push(para(`Policy ${e.policy}: Redis decides by it which keys to drop when memory is full.`));
  }
  $("evict-explain").replaceChildren(...out);
}

/** Failed cache operations so far, every replica's when known. */
function cacheErrors() {
  if (!lastStats) return 0;
  const t = lastStats.fleet ? lastStats.fleet.totals : lastStats;
  return t.errors || 0;
}

/** Runs an eviction action with its buttons disabled; then Restore is enabled only while shrunk. */
async function evictBusy(origin, work) {
  await busy([$("evict-shrink"), $("evict-traffic"), $("evict-restore")], origin, work);
  if (eviction) renderEviction(eviction);
}

$("evict-shrink").addEventListener("click", (ev) => evictBusy(ev.currentTarget, async () => {
  say("evict-message", "");
  try {
    const at = Date.now();
    const beforeFig = await api("/api/labs/eviction");
    const choice = $("evict-size").value;
    const bytes = choice === "below" ? beforeFig.used_memory - EVICT_BELOW : Number(choice);
    if (choice === "below" && bytes < (beforeFig.min_bytes || MIB)) {
      throw new Error(`Redis uses too little to go ${fmtBytes(EVICT_BELOW)} below it: run uniform traffic first.`);
    }
    const pts = (timeline && timeline.points) || [];
    const lastAt = pts.length ? pts[pts.length - 1].at_ms : at;
    const ratioBefore = ratioOver(pts, lastAt - HIT_WINDOW_MS, lastAt);
    eviction = await postJson("/api/labs/eviction/shrink", { maxmemory: bytes });
    // The server's timeline clock, so "since" and "before" split at the shrink.
    evictRun = { at: lastAt, from: beforeFig.maxmemory, to: eviction.maxmemory, usedBefore: beforeFig.used_memory,
      evictedBefore: beforeFig.evicted_keys, ratioBefore, errorsBefore: cacheErrors(), restoredAt: null,
      restoredEvicted: null };
    renderEviction(eviction);
    renderEvictExplain();
    markChart(`maxmemory ${fmtBytes(eviction.maxmemory)}`);
    say("evict-message", `Redis maxmemory is now ${fmtBytes(eviction.maxmemory)}. ` + (traffic && traffic.running
      ? "Watch evicted keys climb and the hit ratio fall." : "Now run uniform traffic."));
  } catch (err) {
    say("evict-message", err.message, true);
  }
}));

$("evict-traffic").addEventListener("click", (ev) => evictBusy(ev.currentTarget, async () => {
  say("evict-message", "");
  try {
    await startTraffic("uniform", 60, "evict-message");
  } catch (err) {
    say("evict-message", err.message, true);
  }
}));

$("evict-restore").addEventListener("click", (ev) => evictBusy($("evict-shrink"), async () => {
  say("evict-message", "");
  try {
    eviction = await api("/api/labs/eviction/restore", { method: "POST" });
    if (evictRun && !evictRun.restoredAt) {
      const pts = (timeline && timeline.points) || [];
      evictRun.restoredAt = pts.length ? pts[pts.length - 1].at_ms + LIVE_MS : Date.now();
      evictRun.restoredEvicted = eviction.evicted_keys;
    }
    renderEviction(eviction);
    renderEvictExplain();
    say("evict-message", `Restored: maxmemory is ${fmtBytes(eviction.maxmemory)} again.`);
    markChart("restored");
  } catch (err) {
    say("evict-message", err.message, true);
  }
}));

// ---- stampede lab --------------------------------------------------------------------------

function renderStampede(boxId, r) {
  const box = $(boxId);
  box.querySelector(".stampede-headline").textContent =
    `${plural(r.requests, "request", "requests")} → ${plural(r.database_queries, "database query", "database queries")}`;
  const parts = [
    `${fmtInt(r.coalesced)} waited for another request's query`,
    `${fmtInt(r.hits)} hits`,
    `${fmtInt(r.misses)} misses`,
    `${fmtInt(r.errors)} errors`,
    `${fmtMs(r.elapsed_ms)} ms in all`,
  ];
  if (r.db_delay_ms) parts.push(delayNote(r.db_delay_ms));
  box.querySelector(".stampede-detail").textContent = parts.join(" · ");
}

$("stampede-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const button = $("stampede-run");
  await busy([button], button, async () => {
    say("stampede-message", "");
    const endpoint = $("stampede-endpoint").value;
    const body = { requests: Number($("stampede-requests").value), endpoint };
    if (endpoint === "product") body.id = 3;
    try {
      const results = {};
      for (const [flag, boxId] of [[true, "stampede-on"], [false, "stampede-off"]]) {
        say("stampede-message", `Firing ${body.requests} requests with single-flight ${flag ? "on" : "off"}…`);
        results[flag] = await postJson("/api/labs/stampede", Object.assign({ single_flight: flag }, body));
        renderStampede(boxId, results[flag]);
      }
      const on = results[true], off = results[false];
      say("stampede-message", `Done: ${on.requests} requests for ${on.key}, deleted before each run.`);
      const notes = [`With single-flight, concurrent misses of ${on.key} on one replica share one query; without it, ` +
        "each miss queries PostgreSQL."];
      if (off.hits > 0) {
        notes.push(`Without single-flight, ${plural(off.hits, "request", "requests")} still hit: they arrived after the ` +
          "first query had refilled the key" + (off.db_delay_ms ? "." : "; an artificial database delay widens the window."));
      }
      $("stampede-note").textContent = notes.join(" ");
    } catch (err) {
      say("stampede-message", err.message, true);
    }
  });
});

// ---- wiring --------------------------------------------------------------------------------

window.addEventListener("resize", drawTimeline);
refreshTimeline();
refreshTraffic();
refreshEviction();
setInterval(() => { refreshTimeline(); refreshTraffic(); refreshEviction(); }, LIVE_MS);
statsListeners.push(() => drawTimeline());
