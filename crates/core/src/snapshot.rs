//! Typed look-ups into a snapshot.

use crate::{Child, Connections, Metrics, ProbeValue, Signal, Snapshot, Trigger};

impl Snapshot {
    /// Whether a drain is under way.
    pub fn draining(&self) -> bool {
        self.trigger != Trigger::None
    }

    /// The value of the probe called `name`.
    pub fn probe(&self, name: &str) -> Option<&ProbeValue> {
        self.probes
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.value)
    }

    /// The reading of the `connections` probe called `name`, if it is one and
    /// it was sampled.
    pub fn connections(&self, name: &str) -> Option<&Connections> {
        match self.probe(name) {
            Some(ProbeValue::Connections(c)) => Some(c),
            _ => None,
        }
    }

    /// The reading of the `metrics` probe called `name`, if it is one and it
    /// was sampled.
    pub fn metrics(&self, name: &str) -> Option<&Metrics> {
        match self.probe(name) {
            Some(ProbeValue::Metrics(m)) => Some(m),
            _ => None,
        }
    }

    /// When `signal` was first sent during this drain (ms since it began).
    pub fn sent_at(&self, signal: Signal) -> Option<u32> {
        self.signals_sent
            .iter()
            .find(|s| s.signal == signal)
            .map(|s| s.at_ms)
    }

    /// Whether the app is still running.
    pub fn child_running(&self) -> bool {
        self.child == Child::Running
    }

    /// The total drain budget: time spent plus time left.
    pub fn budget_ms(&self) -> u32 {
        self.elapsed_ms.saturating_add(self.remaining_ms)
    }
}

impl ProbeValue {
    /// A probe's verdict read as "the app is idle": an HTTP 2xx, an existing
    /// file, an exec that exited 0, no request in flight, metrics that sum
    /// to zero. A failed probe is never idle.
    pub fn is_idle(&self) -> bool {
        match self {
            ProbeValue::Connections(c) => c.in_flight == 0,
            ProbeValue::Http(r) => (200..300).contains(&r.status),
            ProbeValue::File(f) => f.exists,
            ProbeValue::Exec(code) => *code == 0,
            ProbeValue::Metrics(m) => m.sum == 0.0,
            ProbeValue::Failed(_) => false,
        }
    }
}
