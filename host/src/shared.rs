//! What the controller publishes and the admin server reads: readiness, the
//! timeline, the metrics and a status summary. Only the controller writes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::metrics::{Metrics, Phase};
use crate::policy::Identity;
use crate::timeline::Timeline;

/// The state shared between the controller and the admin server.
pub struct Shared {
    ready: AtomicBool,
    pub timeline: Timeline,
    pub metrics: Metrics,
    status: Mutex<Status>,
}

/// A summary for `/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub phase: Phase,
    /// The policy deciding now; `None` while the first one compiles or if it
    /// was refused (the built-in `drain` logic decides then).
    pub policy: Option<PolicyStatus>,
    /// The last policy that was refused, and why.
    pub last_refused: Option<Refused>,
    /// The configuration, without anything secret.
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub source: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub source: String,
    pub reason: String,
}

impl Shared {
    pub fn new(config: serde_json::Value) -> Self {
        Shared {
            ready: AtomicBool::new(true),
            timeline: Timeline::default(),
            metrics: Metrics::default(),
            status: Mutex::new(Status {
                phase: Phase::Serving,
                policy: None,
                last_refused: None,
                config,
            }),
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_draining(&self) {
        self.metrics.set_phase(Phase::Draining);
        self.update(|s| s.phase = Phase::Draining);
    }

    pub fn policy_loaded(&self, identity: &Identity) {
        self.metrics.reload(true);
        self.update(|s| {
            s.policy = Some(PolicyStatus {
                source: identity.source.clone(),
                sha256: identity.sha256.clone(),
            })
        });
    }

    pub fn policy_refused(&self, source: &str, reason: &str) {
        self.metrics.reload(false);
        self.update(|s| {
            s.last_refused = Some(Refused {
                source: source.to_string(),
                reason: reason.to_string(),
            })
        });
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
