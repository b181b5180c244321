// cache-demo dashboard: everything shown comes from the server's API; nothing is computed from guesses.
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";

let ttlState = null; // { key, ttl, configured, at }
let lastLoad = null;
// The latest /api/stats, and who wants it after each refresh (labs.js).
let lastStats = null;
const statsListeners = [];

function fmtMs(v) {
  if (v == null || !isFinite(v)) return "–";
  if (v < 1) return v.toFixed(3);
  if (v < 10) return v.toFixed(2);
  return v.toFixed(1);
}

function fmtInt(v) {
  return v == null ? "–" : Number(v).toLocaleString("en-US");
}

function fmtPct(ratio, digits = 1) {
  return ratio == null || !isFinite(ratio) ? "–" : `${(ratio * 100).toFixed(digits)}%`;
}

/** The words every figure that includes database time carries while the artificial delay is on. */
function delayNote(ms) {
  return ms ? `includes an artificial database delay of ${ms} ms per query` : "";
}

function setMessage(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.classList.toggle("error", Boolean(isError));
}

function adminHeaders() {
  const token = $("admin-token").value.trim();
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function api(path, options) {
  const opts = Object.assign({ cache: "no-store" }, options);
  opts.headers = Object.assign({}, opts.headers || {}, adminHeaders());
  const res = await fetch(path, opts);
  if (res.status === 401) {
    $("token-row").hidden = false;
    $("admin-token").focus();
    throw new Error("This action needs the admin token: enter it below and try again.");
  }
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const reason = body && body.error ? body.error : `HTTP ${res.status}`;
    throw new Error(reason);
  }
  return body;
}

function target() {
  const endpoint = $("endpoint").value;
  const params = { endpoint };
  if (endpoint === "search") params.q = $("query").value;
  if (endpoint === "product") params.id = $("product-id").value;
  return params;
}

function targetQuery() {
  return new URLSearchParams(target()).toString();
}

function displayPath(t) {
  switch (t.endpoint) {
    case "categories": return "GET /api/categories";
    case "search": return `GET /api/products?q=${encodeURIComponent(t.q.trim().toLowerCase())}&limit=20`;
    case "top": return "GET /api/top-products?limit=10";
    case "product": return `GET /api/products/${t.id}`;
    default: return "";
  }
}

function onTargetChange() {
  const endpoint = $("endpoint").value;
  $("query-label").hidden = endpoint !== "search";
  $("id-label").hidden = endpoint !== "product";
  $("target-path").textContent = displayPath(target());
  clearCompare();
  refreshTtl();
}

function clearCompare() {
  for (const id of ["compare-db-ms", "compare-cache-ms", "compare-speedup"]) $(id).textContent = "–";
  $("compare-outcome").textContent = "";
  $("compare-note").textContent = "";
}

// ---- live stats ----------------------------------------------------------------------------

async function refreshStats() {
  try {
    const s = await api("/api/stats");
    lastStats = s;
    // Every replica's counters (through Redis); this replica's alone when the fleet is not known.
    const fleet = s.fleet;
    const totals = fleet ? fleet.totals : s;
    $("hit-rate").textContent = fmtPct(totals.hit_rate);
    $("hits").textContent = fmtInt(totals.hits);
    $("misses").textContent = fmtInt(totals.misses);
    renderReplicas(s);
    $("keys").textContent = s.keys == null ? "–" : fmtInt(s.keys);
    const r = s.redis || {};
    const pill = $("redis-status");
    if (r.available) {
      const max = r.maxmemory ? r.maxmemory_human : "no limit";
      $("memory").textContent = `${r.used_memory_human} / ${max}`;
      $("policy").textContent = r.maxmemory_policy;
      $("evicted").textContent = fmtInt(r.evicted_keys);
      pill.textContent = `Redis ${r.redis_version}: up`;
      pill.className = "pill up";
    } else {
      $("memory").textContent = $("policy").textContent = $("evicted").textContent = "–";
      pill.textContent = "Redis: unavailable (answering from PostgreSQL)";
      pill.className = "pill down";
    }
    $("circuit").textContent = r.circuit || "–";
    const p = s.patterns || {};
    const on = (b) => (b ? "on" : "off");
    const l1 = s.l1 ? `L1 ${s.l1.active ? "on" : "waiting"} (${fmtInt(s.l1.entries)} entries)` : "L1 off";
    $("patterns").textContent = [
      `single-flight ${on(p.single_flight)}`,
      `stampede lock ${on(p.stampede_lock)}`,
      `TTL jitter ±${p.ttl_jitter_pct}%`,
      `circuit breaker ${on(p.circuit_breaker)}`,
      l1,
      `write-through ${on(p.write_through)}`,
    ].join(" · ");
    if (p.admin_token_required) $("token-row").hidden = false;
    const banner = $("delay-banner");
    banner.hidden = !s.db_delay_ms;
    if (s.db_delay_ms) {
      banner.textContent = `Artificial: a delay of ${s.db_delay_ms} ms is added to every PostgreSQL query ` +
        "(DB_DELAY_MS, or the buttons below). Database times on this page include it.";
    }
    $("recent-delay").hidden = !s.db_delay_ms;
    $("recent-delay").textContent = s.db_delay_ms
      ? `The time of each request that queried PostgreSQL ${delayNote(s.db_delay_ms)}.` : "";
    document.querySelectorAll(".db-delay").forEach((b) => {
      b.setAttribute("aria-pressed", String(Number(b.dataset.ms) === (s.db_delay_ms || 0)));
    });
    $("stats-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    statsListeners.forEach((f) => f(s));
  } catch (e) {
    $("stats-updated").textContent = `stats unavailable: ${e.message}`;
  }
}

function ageText(ms) {
  if (ms == null) return "–";
  return ms < 1000 ? "just now" : `${(ms / 1000).toFixed(0)} s ago`;
}

function renderReplicas(s) {
  const fleet = s.fleet;
  const rows = fleet ? fleet.replicas : [{ id: s.replica || "this replica", self: true, hits: s.hits, misses: s.misses,
    hit_rate: s.hit_rate, db_queries: null, age_ms: 0 }];
  $("replicas-caption").textContent = !fleet
    ? "Per replica: this one only"
    : fleet.aggregated
      ? `Per replica: ${rows.length} reporting through Redis; the boxes above are their totals`
      : "Per replica: Redis is unreachable, so only this replica is counted";
  $("replicas").querySelector("tbody").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    const name = r.self ? `${r.id} (answered this page)` : r.id;
    for (const text of [name, fmtInt(r.hits), fmtInt(r.misses), fmtPct(r.hit_rate), fmtInt(r.db_queries), ageText(r.age_ms)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function setDbDelay(button) {
  const ms = Number(button.dataset.ms);
  const out = $("db-delay-message");
  out.classList.remove("error");
  try {
    const r = await api("/api/labs/db-delay", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ms }),
    });
    out.textContent = r.db_delay_ms
      ? `Every replica now adds an artificial ${r.db_delay_ms} ms to each database query.`
      : "No artificial delay: database times are real again.";
    if (typeof markChart === "function") markChart(r.db_delay_ms ? `delay ${r.db_delay_ms} ms` : "no delay"); // labs.js
  } catch (e) {
    out.textContent = e.message;
    out.classList.add("error");
  }
  refreshStats();
}

async function refreshRecent() {
  try {
    const { requests } = await api("/api/recent");
    const body = $("recent").querySelector("tbody");
    body.replaceChildren(...requests.map((r) => {
      const tr = document.createElement("tr");
      const cells = [
        new Date(r.at_ms).toLocaleTimeString(),
        `${r.method} ${r.path}`,
        String(r.status),
        null,
        fmtMs(r.ms),
        r.replica || "–",
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 3) {
          if (r.cache) {
            const tag = document.createElement("span");
            tag.className = `tag ${r.cache}`;
            tag.textContent = r.cache;
            td.appendChild(tag);
          } else {
            td.textContent = "–";
          }
        } else {
          td.textContent = text;
        }
        tr.appendChild(td);
      });
      return tr;
    }));
  } catch (_) { /* shown by the stats line */ }
}

// ---- TTL countdown -------------------------------------------------------------------------

async function refreshTtl() {
  try {
    const t = await api(`/api/ttl?${targetQuery()}`);
    ttlState = { key: t.key, ttl: t.exists ? t.ttl_secs : null, configured: t.configured_ttl_secs, at: Date.now() };
  } catch (e) {
    ttlState = null;
    $("ttl-key").textContent = "–";
    $("ttl-value").textContent = e.message;
  }
  renderTtl();
}

function renderTtl() {
  if (!ttlState) return;
  $("ttl-key").textContent = ttlState.key;
  if (ttlState.ttl == null) {
    $("ttl-value").textContent = "not cached";
    $("ttl-fill").style.width = "0";
    return;
  }
  const left = Math.max(0, ttlState.ttl - Math.floor((Date.now() - ttlState.at) / 1000));
  $("ttl-value").textContent = left > 0 ? `${left} s` : "expiring";
  $("ttl-fill").style.width = `${Math.min(100, (100 * left) / ttlState.configured)}%`;
}

// ---- actions -------------------------------------------------------------------------------

async function withBusy(button, work) {
  const buttons = document.querySelectorAll(".buttons button");
  buttons.forEach((b) => { b.disabled = true; });
  setMessage("");
  try {
    await work();
  } catch (e) {
    setMessage(e.message, true);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    button.focus();
    refreshStats();
    refreshRecent();
    refreshTtl();
  }
}

async function runCompare() {
  await withBusy($("run-compare"), async () => {
    const c = await api(`/api/compare?${targetQuery()}`);
    $("compare-db-ms").textContent = fmtMs(c.database.ms);
    $("compare-cache-ms").textContent = fmtMs(c.cache.ms);
    $("compare-outcome").textContent = `(${c.cache.x_cache}${c.cache.redis_error ? ", Redis unavailable" : ""})`;
    $("compare-speedup").textContent = c.speedup == null ? "no speedup: the cache missed" : `${c.speedup.toFixed(1)}×`;
    const notes = [];
    if (c.cache.x_cache === "MISS") {
      notes.push(c.cache.redis_error
        ? "Redis did not answer, so both requests went to PostgreSQL."
        : `The cache missed: that request went to PostgreSQL too (a miss is never faster than the database) and stored the result in ${c.key}. Run it again to see a hit.`);
    } else {
      notes.push(`Served from Redis key ${c.key}.`);
    }
    if (c.db_delay_ms) {
      const share = c.database.ms > 0 ? Math.min(100, (100 * c.db_delay_ms) / c.database.ms) : 0;
      notes.push(`${c.db_delay_ms} ms of the database time (${share.toFixed(0)}%) is the artificial database delay.`);
    }
    $("compare-note").textContent = notes.join(" ");
  });
}

async function runLoad() {
  await withBusy($("run-load"), async () => {
    const rounds = Number($("rounds").value);
    const t = target();
    const body = { endpoint: t.endpoint, rounds };
    if (t.q !== undefined) body.q = t.q;
    if (t.id !== undefined) body.id = Number(t.id);
    setMessage(`Running ${rounds} rounds…`);
    lastLoad = await api("/api/load-test", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const done = lastLoad.completed_rounds;
    setMessage(lastLoad.truncated
      ? `Stopped after ${done} of ${rounds} rounds (time budget).`
      : `${done} rounds in ${fmtMs(lastLoad.total_ms)} ms.`);
    $("load-caption").textContent = `${lastLoad.path}: ${done} rounds` +
      (lastLoad.db_delay_ms ? `; PostgreSQL times ${delayNote(lastLoad.db_delay_ms)}` : "");
    drawChart();
    fillSummary(lastLoad.summary);
  });
}

async function flush() {
  await withBusy($("flush"), async () => {
    const r = await api("/api/flush-cache", { method: "POST" });
    setMessage(`Flushed ${r.deleted} keys; counters reset. The next request misses.`);
    if (typeof markChart === "function") markChart("flush"); // labs.js
  });
}

function fillSummary(summary) {
  for (const [cls, s] of [["db", summary.database], ["cache", summary.cache]]) {
    const cells = document.querySelectorAll(`#summary tr.${cls} td`);
    const values = s ? [s.p50, s.p95, s.max, s.mean] : [null, null, null, null];
    values.forEach((v, i) => { cells[i].textContent = v == null ? "–" : `${fmtMs(v)} ms`; });
  }
}

// ---- chart (inline SVG, no library) --------------------------------------------------------

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart() {
  const chart = $("chart");
  chart.replaceChildren();
  if (!lastLoad || lastLoad.rounds.length === 0) return;
  // Drawn in the element's own pixels, so text is never stretched; redrawn on resize.
  const W = Math.max(200, chart.clientWidth), H = 260, left = 64, bottom = 20, top = 10;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const plotH = H - bottom - top, plotW = W - left - 4;
  const values = lastLoad.rounds.flatMap((r) => [r.database_ms, r.cache_ms]).filter((v) => v > 0);
  const log = $("log-scale").checked;
  let y, ticks;
  if (log) {
    const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values))));
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values))));
    const span = Math.log10(hi) - Math.log10(lo) || 1;
    y = (v) => top + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * plotH;
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
  } else {
    const max = Math.max(...values);
    const step = Math.pow(10, Math.floor(Math.log10(max))) / 2;
    const hi = Math.ceil(max / step) * step;
    y = (v) => top + plotH - (v / hi) * plotH;
    ticks = [0, hi / 4, hi / 2, (3 * hi) / 4, hi];
  }
  for (const t of ticks) {
    const ty = y(t);
    chart.appendChild(svg("line", { x1: left, x2: W, y1: ty, y2: ty }));
    chart.appendChild(svg("text", { x: left - 4, y: ty + 4, "text-anchor": "end" }, `${fmtMs(t)} ms`));
  }
  const n = lastLoad.rounds.length;
  const group = plotW / n;
  const bar = Math.max(1, group * 0.4);
  const base = y(log ? ticks[0] : 0);
  lastLoad.rounds.forEach((r, i) => {
    const x = left + i * group + group * 0.1;
    for (const [cls, v, dx, name] of [["bar-db", r.database_ms, 0, "PostgreSQL"], ["bar-cache", r.cache_ms, bar, "cache"]]) {
      const top_ = y(v);
      const rect = svg("rect", { class: cls, x: x + dx, y: top_, width: bar, height: Math.max(1, base - top_) });
      rect.appendChild(svg("title", {}, `round ${r.round} ${name}: ${fmtMs(v)} ms${cls === "bar-cache" ? ` (${r.cache_x_cache})` : ""}`));
      chart.appendChild(rect);
    }
  });
  if (n <= 50) {
    const every = Math.ceil(n / 10);
    lastLoad.rounds.forEach((r, i) => {
      if (i % every === 0) {
        chart.appendChild(svg("text", { x: left + i * group + group / 2, y: H - 5, "text-anchor": "middle" }, String(r.round)));
      }
    });
  }
}

// ---- wiring --------------------------------------------------------------------------------

// No inline handlers: the Content-Security-Policy allows scripts from this origin's files only.
$("target-form").addEventListener("submit", (e) => e.preventDefault());
$("endpoint").addEventListener("change", onTargetChange);
$("query").addEventListener("change", onTargetChange);
$("product-id").addEventListener("change", onTargetChange);
$("run-compare").addEventListener("click", runCompare);
$("run-load").addEventListener("click", runLoad);
$("flush").addEventListener("click", flush);
$("log-scale").addEventListener("change", drawChart);
document.querySelectorAll(".db-delay").forEach((b) => b.addEventListener("click", () => setDbDelay(b)));
window.addEventListener("resize", drawChart);

onTargetChange();
refreshStats();
refreshRecent();
setInterval(() => { refreshStats(); refreshRecent(); refreshTtl(); }, REFRESH_MS);
setInterval(renderTtl, 1000);
