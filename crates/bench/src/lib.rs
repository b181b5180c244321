//! cache-demo-bench: drives a running cache-demo over HTTP and reports, per endpoint, the database path
//! (`?cache=off`) against the cached path: requests/s, latency percentiles, errors, the queries PostgreSQL ran,
//! the hit ratio; plus the miss path, writes against the hit ratio, and the performance bar.
//!
//! - [`client`]: one keep-alive HTTP/1.1 connection per worker (hyper);
//! - [`workload`]: endpoints, key distributions, reads and writes;
//! - `load`: the workers, their histograms, the shared deadline and budget;
//! - `app`: the app's counters and metrics, and starting it for `make bench`;
//! - [`reference`]: `cache-demo-ref`, the servers the app is measured against; [`calibrate`]: the app and
//!   them in turns;
//! - [`scenario`]: the runs and their order; `cli`: the options;
//! - `summary` and [`report`]: the maths, the bar, Markdown and JSON.

pub(crate) mod app;
pub mod calibrate;
pub(crate) mod cli;
pub mod client;
pub(crate) mod load;
pub mod reference;
pub mod report;
pub mod scenario;
pub(crate) mod summary;
pub mod workload;

pub use crate::cli::{Args, run};
pub use crate::report::Report;
pub use crate::scenario::{Plan, Runner};
