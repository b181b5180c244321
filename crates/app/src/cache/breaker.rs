//! Circuit breaker for Redis: after `failures` consecutive failures or timeouts it opens, and requests skip
//! Redis without waiting on timeouts; after `cooldown` it half-opens and lets one probe through; the probe's
//! success closes it, its failure opens it again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half-open",
            State::Open => "open",
        }
    }

    /// Value of the `redis_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::HalfOpen,
            2 => State::Open,
            _ => State::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub enabled: bool,
    pub failures: u32,
    pub cooldown: Duration,
}

/// Whether a call may go to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Allowed,
    /// The one call that tests a half-open breaker.
    Probe,
    Rejected,
}

/// The decision logic, free of clocks and locks so it can be tested step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub state: State,
    pub failures: u32,
    opened_at: Option<Instant>,
    probe_started: Option<Instant>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine { state: State::Closed, failures: 0, opened_at: None, probe_started: None }
    }
}

impl Machine {
    pub fn permit(&mut self, cfg: &BreakerConfig, now: Instant) -> Permit {
        match self.state {
            State::Closed => Permit::Allowed,
            State::Open => {
                if self.opened_at.is_some_and(|t| now.duration_since(t) >= cfg.cooldown) {
                    self.state = State::HalfOpen;
                    self.probe_started = Some(now);
                    Permit::Probe
                } else {
                    Permit::Rejected
                }
            }
            // One probe at a time; a probe whose caller vanished is replaced after another cool-down.
            State::HalfOpen => {
                if self.probe_started.is_some_and(|t| now.duration_since(t) >= cfg.cooldown) {
                    self.probe_started = Some(now);
                    Permit::Probe
                } else {
                    Permit::Rejected
                }
            }
        }
    }

    pub fn success(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.opened_at = None;
        self.probe_started = None;
    }

    pub fn failure(&mut self, cfg: &BreakerConfig, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.state == State::HalfOpen || self.failures >= cfg.failures {
            self.state = State::Open;
            self.opened_at = Some(now);
            self.probe_started = None;
        }
    }
}

pub struct Breaker {
    cfg: BreakerConfig,
    machine: Mutex<Machine>,
    /// Mirrors `machine.state` so the closed path needs no lock.
    state: AtomicU8,
    failures: AtomicU32,
    metrics: Metrics,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, metrics: Metrics) -> Self {
        metrics.redis_circuit_state.set(State::Closed.gauge());
        Breaker {
            cfg,
            machine: Mutex::new(Machine::default()),
            state: AtomicU8::new(0),
            failures: AtomicU32::new(0),
            metrics,
        }
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    pub fn permit(&self) -> Permit {
        if !self.cfg.enabled || self.state() == State::Closed {
            return Permit::Allowed;
        }
        self.update(|m, cfg| m.permit(cfg, Instant::now()))
    }

    pub fn success(&self) {
        if !self.cfg.enabled || (self.state() == State::Closed && self.failures.load(Ordering::Relaxed) == 0) {
            return;
        }
        self.update(|m, _| m.success());
    }

    pub fn failure(&self) {
        if self.cfg.enabled {
            self.update(|m, cfg| m.failure(cfg, Instant::now()));
        }
    }

    fn update<T>(&self, f: impl FnOnce(&mut Machine, &BreakerConfig) -> T) -> T {
        let mut m = self.machine.lock().unwrap_or_else(|e| e.into_inner());
        let before = m.state;
        let out = f(&mut m, &self.cfg);
        self.failures.store(m.failures, Ordering::Relaxed);
        if m.state != before {
            self.state.store(m.state.gauge() as u8, Ordering::Relaxed);
            self.metrics.redis_circuit_state.set(m.state.gauge());
            self.metrics.redis_circuit_transitions.with_label_values(&[m.state.label()]).inc();
            match m.state {
                State::Open => tracing::warn!(
                    from = before.label(),
                    cooldown_ms = self.cfg.cooldown.as_millis() as u64,
                    "redis circuit breaker opened: skipping Redis during the cool-down"
                ),
                State::HalfOpen => tracing::info!("redis circuit breaker half-open: probing Redis"),
                State::Closed => tracing::info!("redis circuit breaker closed: Redis answers again"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig = BreakerConfig { enabled: true, failures: 3, cooldown: Duration::from_secs(5) };

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (mut m, t0) = (Machine::default(), Instant::now());
        m.failure(&CFG, t0);
        m.failure(&CFG, t0);
        m.success();
        m.failure(&CFG, t0);
        m.failure(&CFG, t0);
        assert_eq!(m.state, State::Closed, "a success resets the count");
        m.failure(&CFG, t0);
        assert_eq!(m.state, State::Open);
        assert_eq!(m.permit(&CFG, t0 + Duration::from_secs(1)), Permit::Rejected);
    }

    #[test]
    fn half_opens_after_the_cooldown_with_a_single_probe() {
        let (mut m, t0) = (Machine::default(), Instant::now());
        for _ in 0..3 {
            m.failure(&CFG, t0);
        }
        let later = t0 + CFG.cooldown;
        assert_eq!(m.permit(&CFG, later), Permit::Probe);
        assert_eq!(m.state, State::HalfOpen);
        assert_eq!(m.permit(&CFG, later), Permit::Rejected, "one probe at a time");
        m.success();
        assert_eq!(m.state, State::Closed);
        assert_eq!(m.permit(&CFG, later), Permit::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cooldown() {
        let (mut m, t0) = (Machine::default(), Instant::now());
        for _ in 0..3 {
            m.failure(&CFG, t0);
        }
        let t1 = t0 + CFG.cooldown;
        assert_eq!(m.permit(&CFG, t1), Permit::Probe);
        m.failure(&CFG, t1);
        assert_eq!(m.state, State::Open);
        assert_eq!(m.permit(&CFG, t1 + Duration::from_secs(4)), Permit::Rejected);
        assert_eq!(m.permit(&CFG, t1 + CFG.cooldown), Permit::Probe);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_cooldown() {
        let (mut m, t0) = (Machine::default(), Instant::now());
        for _ in 0..3 {
            m.failure(&CFG, t0);
        }
        let t1 = t0 + CFG.cooldown;
        assert_eq!(m.permit(&CFG, t1), Permit::Probe);
        assert_eq!(m.permit(&CFG, t1 + CFG.cooldown), Permit::Probe);
    }

    #[test]
    fn disabled_breaker_always_allows() {
        let b = Breaker::new(BreakerConfig { enabled: false, ..CFG }, Metrics::new());
        for _ in 0..10 {
            b.failure();
        }
        assert_eq!(b.permit(), Permit::Allowed);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn breaker_reports_transitions_in_metrics() {
        let metrics = Metrics::new();
        let b = Breaker::new(CFG, metrics.clone());
        for _ in 0..3 {
            b.failure();
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.permit(), Permit::Rejected);
        assert_eq!(metrics.redis_circuit_state.get(), 2);
        assert_eq!(metrics.redis_circuit_transitions.with_label_values(&["open"]).get(), 1);
    }
}
