//! Cross-instance invalidation over Redis pub/sub, with acknowledgements.
//!
//! A write publishes `<id> <instance> <scopes>` on `<prefix>:invalidations` (names and the scope format in
//! `keys`). Every replica (this one too) drops those scopes from its L1 and answers `<id> <instance>` on
//! `<prefix>:invalidation-acks`. The writer
//! waits, bounded, until as many acks arrived as `PUBLISH` said there were subscribers, so when a write is
//! acknowledged to the client no replica's L1 still holds the old value. A replica that lost its
//! subscription switches its L1 off (and empties it) until it has resubscribed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::connection::{CacheError, Command, RedisClient};
use super::flight::Flights;
use super::keys::{ALL_SCOPES, Dropped, Keyspace, parse_scopes};
use super::l1::L1;
use crate::metrics::Metrics;

pub struct Bus {
    redis: Arc<RedisClient>,
    channel: String,
    acks: String,
    instance: String,
    l1: Option<Arc<L1>>,
    flights: Arc<Flights>,
    waiters: Mutex<HashMap<String, watch::Sender<i64>>>,
    subscribed: AtomicBool,
    ack_timeout: Duration,
    metrics: Metrics,
}

/// What happened to a write's announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Announced {
    /// Replicas subscribed when the message was published (this one included).
    pub replicas: i64,
    pub acknowledged: i64,
}

impl Bus {
    pub fn new(
        redis: Arc<RedisClient>,
        keyspace: &Keyspace,
        l1: Option<Arc<L1>>,
        flights: Arc<Flights>,
        ack_timeout: Duration,
        metrics: Metrics,
    ) -> Arc<Self> {
        let (channel, acks) = keyspace.invalidation_channels();
        Arc::new(Bus {
            redis,
            channel: channel.to_owned(),
            acks: acks.to_owned(),
            instance: format!("{:08x}", rand::random::<u32>()),
            l1,
            flights,
            waiters: Mutex::new(HashMap::new()),
            subscribed: AtomicBool::new(false),
            ack_timeout,
            metrics,
        })
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Keeps a subscription open until `shutdown`, resubscribing after every disconnect.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let ended = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.session() => r,
            };
            if self.subscribed.swap(false, Ordering::AcqRel) {
                tracing::warn!(reason = %ended.err().unwrap_or_default(), "invalidation channel lost: L1 off until resubscribed");
                backoff = Duration::from_millis(100);
            }
            if let Some(l1) = &self.l1 {
                l1.stop_serving();
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn session(&self) -> Result<(), String> {
        let connect = self.redis.client().get_async_pubsub();
        let mut pubsub = tokio::time::timeout(self.redis.timeout().max(Duration::from_secs(1)), connect)
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        pubsub.subscribe(&[self.channel.as_str(), self.acks.as_str()]).await.map_err(|e| e.to_string())?;
        // Anything published before now was missed: start L1 empty.
        if let Some(l1) = &self.l1 {
            l1.start_serving();
        }
        self.subscribed.store(true, Ordering::Release);
        tracing::info!(channel = %self.channel, "subscribed to cache invalidations");
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let payload: String = msg.get_payload().unwrap_or_default();
            if msg.get_channel_name() == self.channel {
                self.on_invalidation(&payload).await;
            } else {
                self.on_ack(&payload);
            }
        }
        Err("subscription closed".to_owned())
    }

    async fn on_invalidation(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        let (Some(id), Some(_origin), Some(scopes)) = (parts.next(), parts.next(), parts.next()) else {
            tracing::debug!(payload, "ignoring malformed invalidation");
            return;
        };
        self.metrics.invalidation_messages.with_label_values(&["received"]).inc();
        if scopes == ALL_SCOPES {
            self.flights.forget_finished();
        }
        if let Some(l1) = &self.l1 {
            if scopes == ALL_SCOPES {
                l1.start_serving();
            } else {
                l1.invalidate(&parse_scopes(scopes));
            }
        }
        let ack = format!("{id} {}", self.instance);
        let acks = &self.acks;
        let _: Result<i64, _> = self
            .redis
            .run(Command::Publish, |mut conn| async move {
                ::redis::cmd("PUBLISH").arg(acks).arg(&ack).query_async(&mut conn).await
            })
            .await;
    }

    fn on_ack(&self, payload: &str) {
        if let Some((id, _instance)) = payload.split_once(' ')
            && let Some(tx) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).get(id)
        {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Publishes an invalidation and waits (bounded) for every subscribed replica to acknowledge it; an error
    /// when it could not be published.
    pub async fn announce(&self, dropped: Dropped<'_>) -> Result<Announced, CacheError> {
        let id = format!("{:016x}", rand::random::<u64>());
        let (tx, mut rx) = watch::channel(0i64);
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
        let message = format!("{id} {} {}", self.instance, dropped.wire());
        let channel = &self.channel;
        let published: Result<i64, _> = self
            .redis
            .run(Command::Publish, |mut conn| async move {
                ::redis::cmd("PUBLISH").arg(channel).arg(&message).query_async(&mut conn).await
            })
            .await;
        let result = match published {
            Ok(replicas) => {
                self.metrics.invalidation_messages.with_label_values(&["sent"]).inc();
                // Acks can only be heard while subscribed; without that, waiting would only add latency.
                let acknowledged = if replicas > 0 && self.is_subscribed() {
                    let waited = tokio::time::timeout(self.ack_timeout, rx.wait_for(|n| *n >= replicas)).await.is_ok();
                    let n = *rx.borrow();
                    if !waited {
                        self.metrics.invalidation_ack_timeouts.inc();
                        tracing::warn!(
                            replicas,
                            acknowledged = n,
                            "not every replica acknowledged an invalidation in time"
                        );
                    }
                    n
                } else {
                    0
                };
                Ok(Announced { replicas, acknowledged })
            }
            Err(e) => Err(e),
        };
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        result
    }
}
