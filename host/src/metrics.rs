//! Prometheus metrics: what the controller did, for `/metrics`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    phase: Family<Labels, Gauge>,
    drain_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    decisions: Family<Labels, Counter>,
    call_seconds: Family<Labels, Histogram>,
    failures: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    shadow_disagreements: Family<Labels, Counter>,
    learning_interval: Gauge<f64, std::sync::atomic::AtomicU64>,
    drain_began: Mutex<Option<Instant>>,
    /// The reasons with a series of their own.
    reasons: Mutex<HashSet<String>>,
}

/// Distinct reasons with a series of their own; the rest count as `other`,
/// so a policy cannot grow the metrics without end.
const MAX_REASONS: usize = 64;

/// The longest reason label.
const MAX_LABEL: usize = 128;

/// The label of the reasons beyond [`MAX_REASONS`].
const OTHER: &str = "other";

/// The agent's phase, one-hot in `lameduck_phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Serving,
    Draining,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lameduck");
        let phase = Family::<Labels, Gauge>::default();
        registry.register("phase", "1 for the agent's current phase", phase.clone());
        let drain_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "drain_duration_seconds",
            "Time since the drain began (0 while serving)",
            drain_seconds.clone(),
        );
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions taken, by reason (numbers in the reason replaced by N)",
            decisions.clone(),
        );
        let call_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 1 µs to ~16 ms, doubling.
            Histogram::new((0..15).map(|i| 1e-6 * f64::from(1u32 << i)))
        });
        registry.register(
            "policy_call_duration_seconds",
            "Time of each call into the policy",
            call_seconds.clone(),
        );
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "policy_failures",
            "Policy calls answered by the fallback, by kind of failure",
            failures.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy loads and reloads, by result",
            reloads.clone(),
        );
        let shadow_disagreements = Family::<Labels, Counter>::default();
        registry.register(
            "shadow_disagreements",
            "Answers of the shadow policy that differ from the live policy's, by call",
            shadow_disagreements.clone(),
        );
        let learning_interval = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "learning_interval_seconds",
            "How often learning samples are taken while serving (wider than 0.1 when they cost too much CPU)",
            learning_interval.clone(),
        );
        let metrics = Metrics {
            shadow_disagreements,
            learning_interval,
            registry,
            phase,
            drain_seconds,
            decisions,
            call_seconds,
            failures,
            reloads,
            drain_began: Mutex::new(None),
            reasons: Mutex::default(),
        };
        metrics.set_phase(Phase::Serving);
        metrics
    }
}

impl Metrics {
    pub fn set_learning_interval(&self, ms: u32) {
        self.learning_interval.set(f64::from(ms) / 1000.0);
    }

    pub fn set_phase(&self, phase: Phase) {
        for p in [Phase::Serving, Phase::Draining] {
            let label = vec![("phase", format!("{p:?}").to_lowercase())];
            self.phase.get_or_create(&label).set((p == phase) as i64);
        }
        if phase == Phase::Draining {
            *self.drain_began.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
    }

    pub fn decision(&self, reason: &str) {
        let mut label = reason_label(reason);
        {
            let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
            if !reasons.contains(&label) {
                if reasons.len() < MAX_REASONS {
                    reasons.insert(label.clone());
                } else {
                    label = OTHER.to_string();
                }
            }
        }
        self.decisions.get_or_create(&vec![("reason", label)]).inc();
    }

    pub fn policy_call(&self, call: &'static str, took: Duration) {
        self.call_seconds
            .get_or_create(&vec![("call", call.to_string())])
            .observe(took.as_secs_f64());
    }

    pub fn policy_failure(&self, kind: &'static str) {
        self.failures
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    pub fn shadow_disagreement(&self, call: &'static str) {
        self.shadow_disagreements
            .get_or_create(&vec![("call", call.to_string())])
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        if let Some(began) = *self.drain_began.lock().unwrap_or_else(|e| e.into_inner()) {
            self.drain_seconds.set(began.elapsed().as_secs_f64());
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// A reason as a label of bounded cardinality and length: numbers become
/// `N`, and the label is at most [`MAX_LABEL`] bytes.
fn reason_label(reason: &str) -> String {
    lameduck_core::record::gist(reason, MAX_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_series_are_bounded() {
        let metrics = Metrics::default();
        for i in 0..1_000 {
            // Unique without their numbers, and long.
            let letters: String = format!("{i:04}")
                .chars()
                .map(|d| (b'a' + d.to_digit(10).unwrap() as u8) as char)
                .collect();
            metrics.decision(&format!("{letters} {}", "r".repeat(10_000)));
        }
        let text = metrics.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("lameduck_decisions_total{"))
            .count();
        assert_eq!(series, MAX_REASONS + 1, "{text}");
        assert!(
            text.contains(&format!(
                "lameduck_decisions_total{{reason=\"other\"}} {}",
                1_000 - MAX_REASONS
            )),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() < MAX_LABEL + 100));
    }

    #[test]
    fn reasons_lose_their_numbers() {
        assert_eq!(
            reason_label("last new connection 117 ms ago, waiting for 1000 ms"),
            "last new connection N ms ago, waiting for N ms"
        );
    }
}
