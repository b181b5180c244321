//! The Redis connection: connects in the background (the app starts without Redis), bounds every command
//! with a timeout, times it, and logs availability once per change of state.

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus::Histogram;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisError, RedisResult};
use strum::{EnumCount, EnumIter, IntoStaticStr};
use tokio::sync::OnceCell;

use super::breaker::{Breaker, BreakerConfig, Permit, State};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis is not connected")]
    NotConnected,
    #[error("redis circuit breaker is open")]
    CircuitOpen,
    #[error("redis command `{0}` timed out")]
    Timeout(&'static str),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
}

/// The Redis operations the app runs, each timed as `redis_command_duration_seconds{command}` under its label,
/// the variant's name in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumCount, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Command {
    Lookup,
    Claim,
    Fill,
    FillQueued,
    ForgetGeneration,
    Lock,
    Unlock,
    Get,
    Invalidate,
    Publish,
    Peek,
    ConfigGet,
    ConfigSet,
    Exchange,
    Hdel,
    Set,
    Scan,
    Ttl,
    Unlink,
    Info,
    Ping,
}

impl Command {
    /// The `command` label.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub struct RedisClient {
    conn: OnceCell<ConnectionManager>,
    /// Kept for dedicated connections (pub/sub).
    client: Client,
    timeout: Duration,
    metrics: Metrics,
    state: AtomicU8,
    breaker: Breaker,
    /// Start time (nanoseconds since `base`) of the latest-started command whose outcome was applied.
    latest_applied: AtomicU64,
    base: Instant,
    /// Each command's series of `redis_command_duration_seconds`, looked up by its label on first use and kept:
    /// the lookup hashes the label, for every command.
    durations: [OnceLock<Histogram>; Command::COUNT],
}

impl RedisClient {
    /// Parses the URL (a bad URL is a configuration error) and starts connecting in the background.
    /// `password` overrides any password in the URL.
    pub fn connect(
        url: &str,
        password: Option<&str>,
        timeout: Duration,
        breaker: BreakerConfig,
        metrics: Metrics,
    ) -> Result<Arc<Self>, RedisError> {
        // `rediss://` needs a process-wide TLS crypto provider; choosing one twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut info = url.into_connection_info()?;
        if let Some(pw) = password.filter(|p| !p.is_empty()) {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        let client = Client::open(info)?;
        let this = Arc::new(RedisClient {
            conn: OnceCell::new(),
            client: client.clone(),
            timeout,
            breaker: Breaker::new(breaker, metrics.clone()),
            metrics,
            state: AtomicU8::new(UNKNOWN),
            latest_applied: AtomicU64::new(0),
            base: Instant::now(),
            durations: std::array::from_fn(|_| OnceLock::new()),
        });
        this.metrics.redis_up.set(0);
        // The task ends once connected (the manager reconnects by itself from then on) or when the client is dropped.
        tokio::spawn(connect_loop(Arc::downgrade(&this), client, timeout));
        Ok(this)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn breaker_state(&self) -> State {
        self.breaker.state()
    }

    pub fn breaker_enabled(&self) -> bool {
        self.breaker.enabled()
    }

    /// Runs one Redis operation, bounded by the timeout and recorded as `redis_command_duration_seconds{command}`.
    pub async fn run<T, F, Fut>(&self, command: Command, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(conn) = self.conn.get() else {
            return Err(CacheError::NotConnected);
        };
        if self.breaker.permit() == Permit::Rejected {
            return Err(CacheError::CircuitOpen);
        }
        let start = Instant::now();
        let result = tokio::time::timeout_at((start + self.timeout).into(), op(conn.clone())).await;
        self.duration(command).observe(start.elapsed().as_secs_f64());
        // Outcomes are applied in the order the commands started: a reply that was already buffered when
        // Redis died, or an error from a connection that has since been replaced, arrives late and says nothing
        // about Redis now, so it changes neither the logged state nor the breaker.
        let started_at = self.nanos(start);
        let stale = self.latest_applied.fetch_max(started_at, Ordering::AcqRel) > started_at;
        match result {
            Ok(Ok(v)) => {
                if !stale {
                    self.breaker.success();
                    self.mark_up();
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                if stale {
                    tracing::debug!(command = command.label(), error = %e, "late failure of an earlier redis command");
                } else if is_connectivity(&e) {
                    self.breaker.failure();
                    self.mark_down(&e.to_string());
                } else {
                    // Redis answered (with an error reply): it is reachable.
                    self.breaker.success();
                    self.mark_up();
                    tracing::debug!(command = command.label(), error = %e, "redis command failed");
                }
                Err(CacheError::Redis(e))
            }
            Err(_) => {
                if !stale {
                    self.breaker.failure();
                    self.mark_down("timed out");
                }
                Err(CacheError::Timeout(command.label()))
            }
        }
    }

    /// Queues a command without waiting for (or reading) its reply: Redis still runs it, in order with this
    /// connection's other commands. An enqueue proves nothing about Redis's health, so it changes neither the
    /// logged state nor the breaker; it is skipped while the breaker is open.
    pub async fn send_without_reply(&self, command: Command, mut cmd: redis::Cmd) -> Result<(), CacheError> {
        let Some(conn) = self.conn.get() else {
            return Err(CacheError::NotConnected);
        };
        if self.breaker.state() == State::Open {
            return Err(CacheError::CircuitOpen);
        }
        cmd.set_no_response(true);
        let mut conn = conn.clone();
        let start = Instant::now();
        let sent = tokio::time::timeout_at((start + self.timeout).into(), conn.send_packed_command(&cmd)).await;
        self.duration(command).observe(start.elapsed().as_secs_f64());
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CacheError::Redis(e)),
            Err(_) => Err(CacheError::Timeout(command.label())),
        }
    }

    fn duration(&self, command: Command) -> &Histogram {
        self.durations[command as usize]
            .get_or_init(|| self.metrics.redis_duration.with_label_values(&[command.label()]))
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn mark_up(&self) {
        // Read first: every successful command lands here, and a write would take the line from the other cores.
        if self.state.load(Ordering::Relaxed) != UP && self.state.swap(UP, Ordering::Relaxed) != UP {
            self.metrics.redis_up.set(1);
            tracing::info!("redis available: serving through the cache");
        }
    }

    fn mark_down(&self, reason: &str) {
        if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
            self.metrics.redis_up.set(0);
            tracing::warn!(reason, "redis unavailable: answering from PostgreSQL");
        }
    }
}

fn is_connectivity(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

async fn connect_loop(this: Weak<RedisClient>, client: Client, timeout: Duration) {
    // No response timeout of redis-rs's own: every command already runs under `run`'s (or
    // `send_without_reply`'s), which also feeds the breaker. A second timer would fire at the same moment,
    // do the same (drop the wait for the reply; a timeout does not make redis-rs reconnect) and cost every
    // command a timer. The connection timeout covers the whole handshake of each (re)connection.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
        .set_response_timeout(None)
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let mut backoff = Duration::from_millis(250);
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(manager) => {
                let Some(this) = this.upgrade() else { return };
                let _ = this.conn.set(manager);
                this.mark_up();
                return;
            }
            Err(e) => {
                let Some(this) = this.upgrade() else { return };
                this.mark_down(&e.to_string());
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn each_command_has_its_own_slot_and_label() {
        let mut labels = std::collections::HashSet::new();
        for (i, command) in Command::iter().enumerate() {
            assert_eq!(command as usize, i, "{command:?}");
            assert!(labels.insert(command.label()), "label {} twice", command.label());
        }
        assert_eq!(labels.len(), Command::COUNT);
        assert_eq!(Command::FillQueued.label(), "fill_queued");
        assert_eq!(Command::ForgetGeneration.label(), "forget_generation");
    }

    #[tokio::test]
    async fn a_command_is_timed_under_its_label_in_its_clients_registry() {
        let client = |metrics: &Metrics| {
            let breaker = BreakerConfig { enabled: false, failures: 1, cooldown: Duration::from_secs(1) };
            RedisClient::connect("redis://127.0.0.1:1/", None, Duration::from_millis(100), breaker, metrics.clone())
                .expect("client")
        };
        let (one, two) = (Metrics::new(), Metrics::new());
        let (first, second) = (client(&one), client(&two));
        first.duration(Command::FillQueued).observe(0.001);
        first.duration(Command::FillQueued).observe(0.002);
        second.duration(Command::FillQueued).observe(0.001);
        let count = |m: &Metrics, label: &str| m.redis_duration.with_label_values(&[label]).get_sample_count();
        assert_eq!(count(&one, "fill_queued"), 2);
        assert_eq!(count(&one, "lookup"), 0);
        assert_eq!(count(&two, "fill_queued"), 1, "each client keeps the series of its own registry");
    }
}
