//! The report of a bench run:
//! - `types`: what was measured (runs, comparisons, the miss path, each app), the whole [`Report`];
//! - `bar`: the performance goals, each threshold written once, and their evaluation;
//! - `markdown`: the Markdown rendering (long prose in `prose/`);
//! - `splice`: writing it into `docs/benchmarks.md`.
//!
//! JSON is the same structure, serialized.

mod bar;
mod markdown;
mod splice;
mod types;

pub use self::bar::{BAR, Bar, Goal, Status, evaluate_bar};
pub use self::markdown::{fmt_int, fmt_mb, fmt_ms, fmt_pct, fmt_share, fmt_x};
pub use self::splice::{BEGIN, END, splice};
pub use self::types::{
    AppRun, Calibration, Comparison, Environment, MissPath, Report, RunStats, Settings, Speedup, SwitchRates,
};

/// `YYYY-MM-DD HH:MM UTC` of `secs` since the Unix epoch.
pub fn utc_date(secs: u64) -> String {
    let at = i64::try_from(secs).ok().and_then(|s| jiff::Timestamp::from_second(s).ok());
    at.map_or_else(|| "date unknown".to_owned(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

#[cfg(test)]
use crate::{app::L1State, load::XCacheCounts, summary::Latency, workload::CacheMode, workload::Endpoint};

#[cfg(test)]
mod tests;
