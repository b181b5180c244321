//! The catalogue in PostgreSQL: typed rows and one function per query. Nothing here knows about HTTP or Redis.
//!
//! Prices and averages are read as `float8` so they are JSON numbers; timestamps as RFC 3339 text in UTC.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, Postgres};
use sqlx::types::Json;
use sqlx::{Connection as _, Executor, FromRow, PgPool};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct CategoryStats {
    pub id: i32,
    pub name: String,
    pub slug: String,
    pub product_count: i64,
    pub avg_price: Option<f64>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    pub review_count: i64,
    pub avg_rating: Option<f64>,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ProductSummary {
    pub id: i32,
    pub sku: String,
    pub name: String,
    pub price: f64,
    pub stock: i32,
    pub category_id: i32,
    pub category: String,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct TopProduct {
    pub rank: i64,
    pub category_rank: i64,
    pub id: i32,
    pub sku: String,
    pub name: String,
    pub price: f64,
    pub category_id: i32,
    pub category: String,
    pub avg_rating: f64,
    pub review_count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewBrief {
    pub rating: i16,
    pub title: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewSummary {
    pub count: i64,
    pub average: Option<f64>,
    /// Number of 1- to 5-star reviews.
    pub distribution: Vec<i64>,
    pub recent: Vec<ReviewBrief>,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Product {
    pub id: i32,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub stock: i32,
    pub category_id: i32,
    pub category: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductDetail {
    #[serde(flatten)]
    pub product: Product,
    pub reviews: ReviewSummary,
}

#[derive(FromRow)]
struct ProductDetailRow {
    #[sqlx(flatten)]
    product: Product,
    review_count: i64,
    avg_rating: Option<f64>,
    distribution: Vec<i64>,
    recent: Json<Vec<ReviewBrief>>,
}

/// A validated new product (see `http::products` for the checks).
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub stock: i32,
    pub category_id: i32,
}

/// A validated partial update: `None` leaves the column as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<f64>,
    pub stock: Option<i32>,
    pub category_id: Option<i32>,
}

const PRODUCT_COLUMNS: &str = r#"
    p.id, p.sku, p.name, p.description, p.price::float8 AS price, p.stock, p.category_id, c.name AS category,
    to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
    to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS updated_at"#;

const CATEGORY_STATS: &str = r#"
WITH p AS (
    SELECT category_id, count(*) AS n, avg(price) AS avg_price, min(price) AS min_price, max(price) AS max_price
    FROM products GROUP BY category_id
), r AS (
    SELECT p.category_id, count(*) AS n, avg(r.rating) AS avg_rating
    FROM reviews r JOIN products p ON p.id = r.product_id GROUP BY p.category_id
)
SELECT c.id, c.name, c.slug,
       coalesce(p.n, 0) AS product_count,
       round(p.avg_price, 2)::float8 AS avg_price,
       p.min_price::float8 AS min_price,
       p.max_price::float8 AS max_price,
       coalesce(r.n, 0) AS review_count,
       round(r.avg_rating, 2)::float8 AS avg_rating
FROM categories c
LEFT JOIN p ON p.category_id = c.id
LEFT JOIN r ON r.category_id = c.id
ORDER BY c.name"#;

const SEARCH: &str = r#"
SELECT p.id, p.sku, p.name, p.price::float8 AS price, p.stock, p.category_id, c.name AS category
FROM products p JOIN categories c ON c.id = p.category_id
WHERE $1 = '' OR p.name ILIKE $2 OR p.description ILIKE $2
ORDER BY (p.name ILIKE $2) DESC, p.name, p.id
LIMIT $3"#;

/// Ranked by average rating (ties: more reviews first); products need 5 reviews to be ranked at all.
const TOP_PRODUCTS: &str = r#"
WITH rated AS (
    SELECT r.product_id, avg(r.rating) AS avg_rating, count(*) AS review_count
    FROM reviews r GROUP BY r.product_id HAVING count(*) >= 5
), ranked AS (
    SELECT p.id, p.sku, p.name, p.price, p.category_id, c.name AS category, rated.avg_rating, rated.review_count,
           rank() OVER (ORDER BY rated.avg_rating DESC, rated.review_count DESC, p.id) AS rank,
           rank() OVER (PARTITION BY p.category_id ORDER BY rated.avg_rating DESC, rated.review_count DESC, p.id)
               AS category_rank
    FROM rated JOIN products p ON p.id = rated.product_id JOIN categories c ON c.id = p.category_id
)
SELECT rank, category_rank, id, sku, name, price::float8 AS price, category_id, category,
       round(avg_rating, 2)::float8 AS avg_rating, review_count
FROM ranked ORDER BY rank LIMIT $1"#;

static PRODUCT_DETAIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"SELECT {PRODUCT_COLUMNS},
                  (SELECT count(*) FROM reviews r WHERE r.product_id = p.id) AS review_count,
                  (SELECT round(avg(r.rating), 2)::float8 FROM reviews r WHERE r.product_id = p.id) AS avg_rating,
                  ARRAY(SELECT (SELECT count(*) FROM reviews r WHERE r.product_id = p.id AND r.rating = s)
                        FROM generate_series(1, 5) s ORDER BY s) AS distribution,
                  coalesce((SELECT json_agg(json_build_object(
                                'rating', x.rating, 'title', x.title,
                                'created_at', to_char(x.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                                ORDER BY x.created_at DESC, x.id DESC)
                            FROM (SELECT * FROM reviews r WHERE r.product_id = p.id
                                  ORDER BY r.created_at DESC, r.id DESC LIMIT 3) x), '[]'::json) AS recent
               FROM products p JOIN categories c ON c.id = p.category_id
               WHERE p.id = $1"#
    )
});

static CREATE_PRODUCT: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"WITH p AS (
                   INSERT INTO products (sku, name, description, price, stock, category_id)
                   VALUES ($1, $2, $3, $4::numeric(10,2), $5, $6) RETURNING *)
               SELECT {PRODUCT_COLUMNS} FROM p JOIN categories c ON c.id = p.category_id"#
    )
});

static UPDATE_PRODUCT: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"WITH p AS (
                   UPDATE products SET
                       sku = coalesce($2, sku), name = coalesce($3, name), description = coalesce($4, description),
                       price = coalesce($5::numeric(10,2), price), stock = coalesce($6, stock),
                       category_id = coalesce($7, category_id), updated_at = now()
                   WHERE id = $1 RETURNING *)
               SELECT {PRODUCT_COLUMNS} FROM p JOIN categories c ON c.id = p.category_id"#
    )
});

/// The reads that requests make, prepared on every new connection.
static PREPARED_READS: LazyLock<[&'static str; 4]> =
    LazyLock::new(|| [CATEGORY_STATS, SEARCH, TOP_PRODUCTS, PRODUCT_DETAIL.as_str()]);

#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    /// The artificial delay in milliseconds: set at start, changed at runtime by the dashboard.
    delay_ms: Arc<AtomicU64>,
    /// Queries sent since start (probes excluded): the dashboard's "database queries per second".
    queries: Arc<AtomicU64>,
    query_timeout: Duration,
    metrics: Metrics,
}

/// The longest artificial delay the dashboard may set.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// A pooled connection idle for this long is checked (a round trip to PostgreSQL) before a query uses it; one
/// used more recently is not.
///
/// sqlx already checks every connection when it goes back to the pool, after its query. Checking it again when
/// it is taken, sqlx's default, put a second round trip in front of every query: 40–52 µs of a 0.30–0.38 ms
/// read of one product, one connection at a time, on the machine of docs/benchmarks.md. A connection cut within
/// this second (PostgreSQL restarted, its backend terminated) fails its read, which is then made once more on
/// another connection ([`Db::read`]); a write checks its connection whatever its idle time ([`Db::write`]).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Where the thread stands with [`return_connections_when_yielding`]: not in one of its polls, in one, or in one
/// that holds connections. A thread polls one task at a time, so what a read finds here belongs to its own task.
const NOT_COLLECTING: u8 = 0;
const COLLECTING: u8 = 1;
const HOLDING: u8 = 2;

thread_local! {
    /// Plain thread-locals, set around each poll: tokio's task-locals cost several times more, and this runs on
    /// every poll of every connection. The state is a `Cell` without a destructor, so the hit path, which holds
    /// nothing, reads and writes it alone.
    static STATE: Cell<u8> = const { Cell::new(NOT_COLLECTING) };
    /// The connections held in the current poll.
    static HELD: RefCell<Vec<PoolConnection<Postgres>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `task`, an HTTP connection's, so that the pooled connections its reads finish with go back to the pool
/// each time it yields, instead of as each read ends.
///
/// A pooled connection goes back to the pool through a task that sqlx spawns when it is dropped. On a miss, that
/// task and the Redis connection's (woken for the queued fill) were two tasks scheduled before the response, and
/// tokio wakes a parked worker for a second one: a system call of 15–25 µs on the miss's path, measured in
/// docs/benchmarks.md ("Where the time goes on a miss"). Held until the task yields, which for a response that
/// fits the socket's buffer is after it is written, the connection is dropped once that response has left, and
/// the wake, still made, comes after it. Outside such a task (background work, writes, tests) a read drops its
/// connection at once.
pub async fn return_connections_when_yielding<F: Future>(task: F) -> F::Output {
    let mut task = std::pin::pin!(task);
    std::future::poll_fn(|cx| {
        STATE.set(COLLECTING);
        let _returned = ReturnHeld;
        task.as_mut().poll(cx)
    })
    .await
}

/// Ends a poll of [`return_connections_when_yielding`]: drops the connections held, also when the poll panicked.
struct ReturnHeld;

impl Drop for ReturnHeld {
    fn drop(&mut self) {
        if STATE.replace(NOT_COLLECTING) == HOLDING {
            let held = HELD.try_with(|held| std::mem::take(&mut *held.borrow_mut()));
            drop(held);
        }
    }
}

/// Hands `conn` to the task's [`return_connections_when_yielding`], or drops it at once outside one.
fn return_when_yielding(conn: PoolConnection<Postgres>) {
    if STATE.get() == NOT_COLLECTING {
        return;
    }
    // Were the thread-local gone (the thread ending), the closure and the connection in it are dropped.
    if HELD.try_with(move |held| held.borrow_mut().push(conn)).is_ok() {
        STATE.set(HOLDING);
    }
}

pub struct DbOptions {
    pub url: String,
    pub pool_size: u32,
    pub acquire_timeout: Duration,
    pub query_timeout: Duration,
    pub lock_timeout: Duration,
    pub delay: Duration,
}

impl Db {
    /// Creates the pool without connecting: the app starts (and reports not-ready) while PostgreSQL is down,
    /// and the pool reconnects by itself when it comes back.
    pub fn connect_lazy(opts: &DbOptions, metrics: Metrics) -> Result<Self, sqlx::Error> {
        let connect: PgConnectOptions = opts.url.parse()?;
        // Server-side bounds: dropping a query's future does not cancel it (sqlx sends no CancelRequest), so
        // PostgreSQL itself must end a statement or a lock wait that outlives the client's patience.
        let connect = connect.options([
            ("statement_timeout", format!("{}ms", opts.query_timeout.as_millis())),
            ("lock_timeout", format!("{}ms", opts.lock_timeout.as_millis())),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.pool_size.max(1))
            // One connection kept open, so the first request after a quiet spell does not pay for a new one.
            .min_connections(1)
            .acquire_timeout(opts.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            // Every new connection prepares the reads before its first use: a cold connection would otherwise
            // add parse and plan time to whichever request meets it first (the first of a comparison's two).
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for sql in PREPARED_READS.iter() {
                        conn.prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(*sql))).await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(connect.application_name("cache-demo"));
        let delay_ms = Arc::new(AtomicU64::new(opts.delay.as_millis() as u64));
        Ok(Db { pool, delay_ms, queries: Arc::default(), query_timeout: opts.query_timeout, metrics })
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }

    /// Changes the artificial delay of every later query (at most [`MAX_DELAY`]).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.min(MAX_DELAY).as_millis() as u64, Ordering::Relaxed);
    }

    /// Queries sent since start, probes excluded.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Runs one query with the artificial delay, a timeout, and `db_query_duration_seconds{query}`.
    async fn timed<T>(&self, query: &'static str, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T> {
        let started = Instant::now();
        self.queries.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(self.query_timeout, fut).await;
        // After the query, like a slow query whose snapshot is taken at its start and whose result arrives late.
        let delay = self.delay();
        if !delay.is_zero() && matches!(result, Ok(Ok(_))) {
            tokio::time::sleep(delay).await;
        }
        self.metrics.db_duration.with_label_values(&[query]).observe(started.elapsed().as_secs_f64());
        match result {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::DatabaseUnavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    /// A read under [`Db::timed`], made once more on another connection when its connection turned out to be
    /// gone. A read changes nothing, so making it twice is safe; a write is never repeated.
    async fn read<T>(
        &self,
        query: &'static str,
        run: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error> + Clone,
    ) -> Result<T> {
        self.timed(query, async {
            let mut tries = 2;
            loop {
                tries -= 1;
                let read = match self.pool.acquire().await {
                    Ok(mut conn) => {
                        let read = run.clone()(&mut conn).await;
                        // A connection whose read failed is dropped at once: sqlx then checks it, or closes it.
                        if read.is_ok() {
                            return_when_yielding(conn);
                        }
                        read
                    }
                    Err(e) => Err(e),
                };
                match read {
                    Err(e) if connection_lost(&e) && tries > 0 => {
                        tracing::info!(query, error = %e, "database connection lost: reading again on another");
                    }
                    done => return done,
                }
            }
        })
        .await
    }

    /// A write under [`Db::timed`], on a connection checked first whatever its idle time: a write is never made
    /// twice (it may have committed before its connection broke), so it must not start on one that is gone.
    async fn write<T>(
        &self,
        query: &'static str,
        run: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T> {
        self.timed(query, async {
            let mut conn = self.checked_connection().await?;
            run(&mut conn).await
        })
        .await
    }

    /// A pooled connection that answered a check. One that did not is closed and the next one tried, as many
    /// times as the pool has connections and once more, for a new one.
    async fn checked_connection(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let mut tries = self.pool.options().get_max_connections() + 1;
        loop {
            let mut conn = self.pool.acquire().await?;
            match conn.ping().await {
                Ok(()) => return Ok(conn),
                Err(e) => {
                    conn.close_on_drop();
                    tries -= 1;
                    if tries == 0 {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Every connection the pool may open is open and in use: PostgreSQL is reachable, the app is only busy.
    pub fn saturated(&self) -> bool {
        self.pool.size() >= self.pool.options().get_max_connections() && self.pool.num_idle() == 0
    }

    pub async fn ping(&self) -> Result<()> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.query_timeout, sqlx::query("SELECT 1").execute(&self.pool)).await;
        self.metrics.db_duration.with_label_values(&["ping"]).observe(started.elapsed().as_secs_f64());
        match result {
            Ok(r) => r.map(|_| ()).map_err(Error::from),
            Err(_) => Err(Error::DatabaseUnavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    pub async fn category_stats(&self) -> Result<Vec<CategoryStats>> {
        self.read("category_stats", async |c| sqlx::query_as(CATEGORY_STATS).fetch_all(c).await).await
    }

    /// Case-insensitive search of name and description; `term` is matched literally (no wildcards).
    /// An empty term lists products by name.
    pub async fn search_products(&self, term: &str, limit: u32) -> Result<Vec<ProductSummary>> {
        let pattern = format!("%{}%", escape_like(term));
        self.read("search_products", async |c| {
            sqlx::query_as(SEARCH).bind(term).bind(pattern.as_str()).bind(i64::from(limit)).fetch_all(c).await
        })
        .await
    }

    pub async fn top_products(&self, limit: u32) -> Result<Vec<TopProduct>> {
        self.read("top_products", async |c| sqlx::query_as(TOP_PRODUCTS).bind(i64::from(limit)).fetch_all(c).await)
            .await
    }

    pub async fn product(&self, id: i32) -> Result<Option<ProductDetail>> {
        let row: Option<ProductDetailRow> = self
            .read("product", async |c| {
                sqlx::query_as(sqlx::AssertSqlSafe(PRODUCT_DETAIL.as_str())).bind(id).fetch_optional(c).await
            })
            .await?;
        Ok(row.map(|r| ProductDetail {
            product: r.product,
            reviews: ReviewSummary {
                count: r.review_count,
                average: r.avg_rating,
                distribution: r.distribution,
                recent: r.recent.0,
            },
        }))
    }

    pub async fn create_product(&self, new: &NewProduct) -> Result<Product> {
        self.write("create_product", async |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(CREATE_PRODUCT.as_str()))
                .bind(&new.sku)
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.price)
                .bind(new.stock)
                .bind(new.category_id)
                .fetch_one(c)
                .await
        })
        .await
    }

    /// Updates the given columns; `None` when there is no such product. One statement: all or nothing.
    pub async fn update_product(&self, id: i32, patch: &ProductPatch) -> Result<Option<Product>> {
        self.write("update_product", async |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(UPDATE_PRODUCT.as_str()))
                .bind(id)
                .bind(&patch.sku)
                .bind(&patch.name)
                .bind(&patch.description)
                .bind(patch.price)
                .bind(patch.stock)
                .bind(patch.category_id)
                .fetch_optional(c)
                .await
        })
        .await
    }

    /// A product's price; `None` when there is no such product.
    pub async fn price(&self, id: i32) -> Result<Option<f64>> {
        self.read("price", async |c| {
            sqlx::query_scalar("SELECT price::float8 FROM products WHERE id = $1").bind(id).fetch_optional(c).await
        })
        .await
    }

    /// Sets a price in PostgreSQL and nothing else: the dashboard's naive write, which shows what happens when a
    /// write skips invalidation. Never the API's write path. `false` when there is no such product.
    pub async fn set_price_without_invalidation(&self, id: i32, price: f64) -> Result<bool> {
        let done = self
            .write("set_price_without_invalidation", async |c| {
                sqlx::query("UPDATE products SET price = $2::numeric(10,2), updated_at = now() WHERE id = $1")
                    .bind(id)
                    .bind(price)
                    .execute(c)
                    .await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The highest product id (the uniform load draws ids up to it); 0 for an empty catalogue.
    pub async fn max_product_id(&self) -> Result<i32> {
        self.read("max_product_id", async |c| {
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM products").fetch_one(c).await
        })
        .await
    }

    /// Deletes a product and its reviews; false when there was no such product.
    pub async fn delete_product(&self, id: i32) -> Result<bool> {
        let done = self
            .write("delete_product", async |c| {
                sqlx::query("DELETE FROM products WHERE id = $1").bind(id).execute(c).await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Escapes LIKE wildcards so a search for `100%` finds that text and not everything.
fn escape_like(term: &str) -> String {
    let mut out = String::with_capacity(term.len());
    for ch in term.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Whether `e` says that the connection was gone (its server process had ended), not that the query failed.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        // Class 08, connection exceptions; 57P01–57P03: the server is shutting down, crashed, or starting.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of `pool_size` connections on a database of its own, and that database's URL.
    async fn test_db(pool_size: u32) -> (Db, String) {
        let pg = tokio::task::spawn_blocking(cache_demo_testkit::shared_pg).await.expect("PostgreSQL");
        let url = tokio::task::spawn_blocking(move || cache_demo_testkit::fresh_database(pg))
            .await
            .expect("join")
            .expect("a database");
        let opts = DbOptions {
            url: url.clone(),
            pool_size,
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(1),
            delay: Duration::ZERO,
        };
        (Db::connect_lazy(&opts, Metrics::new()).expect("pool"), url)
    }

    /// Ends the server processes of every pooled connection to the database at `url` (as a restart of
    /// PostgreSQL, or an administrator, would), from a connection of its own, and waits until they are gone.
    /// Returns how many there were.
    async fn end_backends(url: &str) -> usize {
        let mut admin = sqlx::PgConnection::connect(url).await.expect("a connection of its own");
        let ended: Vec<i32> = sqlx::query_scalar(
            "WITH app AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = 'cache-demo' \
             AND datname = current_database() AND pid <> pg_backend_pid()) \
             SELECT pid FROM app WHERE pg_terminate_backend(pid)",
        )
        .fetch_all(&mut admin)
        .await
        .expect("pg_terminate_backend");
        for _ in 0..250 {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&ended)
                .fetch_one(&mut admin)
                .await
                .expect("pg_stat_activity");
            if left == 0 {
                return ended.len();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the backends {ended:?} did not end");
    }

    /// Waits until the pool holds `n` idle connections: every connection returned (sqlx does it in a task).
    async fn idle(db: &Db, n: usize) {
        for _ in 0..250 {
            if db.pool.num_idle() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} idle connections, not {n}", db.pool.num_idle());
    }

    /// How many connections the running task holds for [`return_connections_when_yielding`].
    fn held() -> usize {
        HELD.with(|held| held.borrow().len())
    }

    /// In an HTTP connection's task, a read keeps its connection until the task yields, and the task's next read
    /// gets it back then: with a pool of one, the second read could not start otherwise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_task_returns_its_reads_connections_when_it_yields() {
        let (db, _url) = test_db(1).await;
        return_connections_when_yielding(async {
            db.max_product_id().await.expect("a first read");
            assert_eq!(held(), 1, "the read's connection is held until the task yields");
            assert_eq!(db.pool.num_idle(), 0);
            db.max_product_id().await.expect("a second read, on the connection returned meanwhile");
            assert_eq!(held(), 1);
        })
        .await;
        idle(&db, 1).await;
        // Outside such a task a read returns its connection at once.
        db.max_product_id().await.expect("a read");
        assert_eq!((STATE.get(), held()), (NOT_COLLECTING, 0), "nothing is held outside such a task");
        idle(&db, 1).await;
    }

    /// A read whose connection was cut moments ago (too recently to be checked) is made again on another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_on_a_connection_cut_meanwhile_is_made_again() {
        let (db, url) = test_db(1).await;
        db.max_product_id().await.expect("a first read");
        idle(&db, 1).await;
        let released = Instant::now();
        assert_eq!(end_backends(&url).await, 1);
        db.max_product_id().await.expect("the read, made again on a new connection");
        // Else the pool's check, not the second try, would have found the connection gone.
        assert!(released.elapsed() < CHECK_IDLE_AFTER, "the connection was idle too long to be used unchecked");
    }

    /// A write is never made twice, so it starts only on a connection that answered a check, however recently
    /// the connection was used.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_starts_only_on_a_connection_that_answers() {
        let (db, url) = test_db(1).await;
        let before = db.price(1).await.expect("a first read").expect("product 1");
        idle(&db, 1).await;
        assert_eq!(end_backends(&url).await, 1);
        assert!(db.set_price_without_invalidation(1, before + 1.0).await.expect("the write, on a new connection"));
        assert_eq!(db.price(1).await.expect("a read").expect("product 1"), before + 1.0);
    }

    /// Connections idle past [`CHECK_IDLE_AFTER`] are checked before use: with every pooled connection cut, a
    /// read still succeeds (trying it twice would meet two dead connections).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_idle_past_the_check_are_checked_first() {
        let (db, url) = test_db(2).await;
        {
            let (_a, _b) = tokio::try_join!(db.pool.acquire(), db.pool.acquire()).expect("two connections");
        }
        idle(&db, 2).await;
        assert_eq!(end_backends(&url).await, 2);
        tokio::time::sleep(CHECK_IDLE_AFTER + Duration::from_millis(100)).await;
        db.max_product_id().await.expect("a read on a connection opened after the checks failed");
    }

    /// Whatever request meets a new connection first, the reads are already prepared on it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_new_connection_has_the_reads_prepared() {
        let (db, _) = test_db(2).await;
        // Two connections at once: the first opened, and one more made for the second.
        let (mut a, mut b) = tokio::try_join!(db.pool.acquire(), db.pool.acquire()).expect("connections");
        for conn in [&mut a, &mut b] {
            let prepared: Vec<String> = sqlx::query_scalar("SELECT statement FROM pg_prepared_statements")
                .fetch_all(&mut **conn)
                .await
                .expect("pg_prepared_statements");
            for sql in PREPARED_READS.iter() {
                assert!(prepared.iter().any(|p| p == sql), "not prepared: {sql}\nprepared: {prepared:?}");
            }
        }
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("100%"), "100\\%");
        assert_eq!(escape_like("a_b\\c"), "a\\_b\\\\c");
        assert_eq!(escape_like("laptop"), "laptop");
    }
}
