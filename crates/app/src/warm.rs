//! Cache warming: category stats, the top products list and each of those products' pages, loaded into the
//! cache before anyone asks. At start-up and on an interval when configured, and on demand (`POST /api/warm`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cache::Primed;
use crate::catalog::Target;
use crate::error::Result;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct WarmReport {
    pub stored: usize,
    pub already_cached: usize,
    pub not_stored: usize,
    pub keys: Vec<WarmedKey>,
    pub took_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct WarmedKey {
    pub key: String,
    pub result: &'static str,
}

#[derive(Deserialize)]
struct TopIds {
    products: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: i32,
}

pub async fn warm(state: &AppState) -> Result<WarmReport> {
    let started = Instant::now();
    let mut report = WarmReport { stored: 0, already_cached: 0, not_stored: 0, keys: Vec::new(), took_ms: 0.0 };
    let top = Target::Top { limit: state.config.warm_top_n };
    let top_primed = top.prime(state).await?;
    let ids = serde_json::from_slice::<TopIds>(top_primed.data()).map(|t| t.products).unwrap_or_default();
    note(&mut report, state, &top, &top_primed);
    let categories = Target::Categories;
    let primed = categories.prime(state).await?;
    note(&mut report, state, &categories, &primed);
    for IdOnly { id } in ids {
        let target = Target::Product { id };
        // A product deleted meanwhile is simply skipped.
        if let Ok(primed) = target.prime(state).await {
            note(&mut report, state, &target, &primed);
        }
    }
    report.took_ms = started.elapsed().as_secs_f64() * 1000.0;
    state.metrics.warmed_keys.inc_by(report.stored as u64);
    Ok(report)
}

fn note(report: &mut WarmReport, state: &AppState, target: &Target, primed: &Primed) {
    let result = match primed {
        Primed::Stored(_) => {
            report.stored += 1;
            "stored"
        }
        Primed::AlreadyCached(_) => {
            report.already_cached += 1;
            "already-cached"
        }
        Primed::NotStored(_) => {
            report.not_stored += 1;
            "not-stored"
        }
    };
    report.keys.push(WarmedKey {
        key: state.cache.keyspace().short(&state.cache.keyspace().full(&target.key())).to_owned(),
        result,
    });
}

/// Warms at start-up (retrying while PostgreSQL or Redis come up) and every `WARM_INTERVAL_SECS`, until shutdown.
pub fn spawn(state: AppState) {
    let (on_start, every) = (state.config.warm_on_start, state.config.warm_interval_secs);
    if !on_start && every == 0 {
        return;
    }
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        if on_start {
            for attempt in 1..=30 {
                match warm(&state).await {
                    Ok(r) if r.not_stored == 0 => {
                        tracing::info!(
                            stored = r.stored,
                            already_cached = r.already_cached,
                            "cache warmed at start-up"
                        );
                        break;
                    }
                    Ok(_) | Err(_) if attempt == 30 => tracing::warn!("cache warming at start-up gave up"),
                    _ => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        if every == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    match warm(&state).await {
                        Ok(r) => tracing::debug!(stored = r.stored, "cache warmed"),
                        Err(e) => tracing::debug!(error = %e, "cache warming failed"),
                    }
                }
            }
        }
    });
}
