//! What the controller publishes and the admin server reads: readiness, the
//! timeline, the metrics and a status summary. Only the controller writes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::time::Duration;

use lameduck_core::record::PulledFrom;
use serde::Serialize;

use crate::log::Log;
use crate::metrics::{Metrics, Phase};
use crate::timeline::Timeline;
use lameduck_runtime::Identity;

/// The state shared between the controller and the admin server.
pub struct Shared {
    ready: AtomicBool,
    /// `/prestop` calls held, not yet answered.
    prestops: AtomicUsize,
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
    /// The last pull of a policy named by a reference, if the policy is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullStatus>,
    /// The shadow policy, if one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    /// The configuration, without anything secret.
    pub config: serde_json::Value,
}

/// The shadow policy: asked every question the live one is, never obeyed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowStatus {
    /// The shadow deciding now; `None` while it loads or if it was refused.
    pub policy: Option<PolicyStatus>,
    pub last_refused: Option<Refused>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullStatus>,
    /// Questions it answered, and how many of its answers differed from the
    /// live policy's (readiness, signal or what next; reasons aside).
    pub answered: u64,
    pub disagreed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub source: String,
    pub sha256: String,
}

/// A policy named by a reference: what was pulled last, and what failed last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullStatus {
    /// The reference as given (`oci://…@sha256:…` or `…:TAG`).
    pub reference: String,
    /// The manifest digest the last pull got; `None` before one succeeds.
    pub digest: Option<String>,
    /// Where its bytes came from: `registry`, `cache` (the pinned digest),
    /// `last-pull` (a tag's last pull, the registry having failed).
    pub from: Option<PulledFrom>,
    /// Whether they came from the on-disk cache.
    pub from_cache: bool,
    /// How long the last pull took.
    pub pull_ms: Option<u64>,
    /// The last pull, or look-up of a tag, that failed, and why.
    pub last_failure: Option<Refused>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub source: String,
    pub reason: String,
}

impl Shared {
    /// `shadow`: whether a shadow policy is configured; the timeline's
    /// entries are logged to `log`.
    pub fn new(config: serde_json::Value, shadow: bool, log: Log) -> Self {
        Shared {
            ready: AtomicBool::new(true),
            prestops: AtomicUsize::new(0),
            timeline: Timeline::new(log),
            metrics: Metrics::default(),
            status: Mutex::new(Status {
                phase: Phase::Serving,
                policy: None,
                last_refused: None,
                pull: None,
                shadow: shadow.then(ShadowStatus::default),
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

    /// Counts a held `/prestop` call until the guard is dropped.
    pub fn prestop_held(&self) -> impl Drop + '_ {
        struct Held<'a>(&'a AtomicUsize);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.prestops.fetch_add(1, Ordering::SeqCst);
        Held(&self.prestops)
    }

    /// Before the agent exits: the `/prestop` calls it released get their
    /// answer out (a kubelet would otherwise see its hook fail), for at most
    /// `limit`.
    pub fn let_prestops_go(&self, limit: std::time::Duration) {
        let until = std::time::Instant::now() + limit;
        let held = self.prestops.load(Ordering::SeqCst) > 0;
        while self.prestops.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if held {
            // Answered: a moment more for the server to write it.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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

    pub fn shadow_loaded(&self, identity: &Identity) {
        self.update_shadow(|s| {
            s.policy = Some(PolicyStatus {
                source: identity.source.clone(),
                sha256: identity.sha256.clone(),
            })
        });
    }

    pub fn shadow_refused(&self, source: &str, reason: &str) {
        self.update_shadow(|s| {
            s.last_refused = Some(Refused {
                source: source.to_string(),
                reason: reason.to_string(),
            })
        });
    }

    /// A policy named by `reference` was pulled (the live one's, or the
    /// shadow's); `failure`: why the registry was not used, if it was not.
    pub fn pulled(
        &self,
        shadow: bool,
        reference: &str,
        digest: &str,
        from: PulledFrom,
        failure: Option<&str>,
        took: Duration,
    ) {
        self.metrics.pull(from, took);
        self.update_pull(shadow, reference, |pull| {
            pull.digest = Some(digest.to_string());
            pull.from = Some(from);
            pull.from_cache = from != PulledFrom::Registry;
            pull.pull_ms = Some(took.as_millis() as u64);
            if let Some(failure) = failure {
                pull.last_failure = Some(Refused {
                    source: reference.to_string(),
                    reason: failure.to_string(),
                });
            }
        });
    }

    /// A pull of `reference` (or a look-up of the tag) failed.
    pub fn pull_failed(&self, shadow: bool, reference: &str, reason: &str) {
        self.metrics.pull_failed();
        self.update_pull(shadow, reference, |pull| {
            pull.last_failure = Some(Refused {
                source: reference.to_string(),
                reason: reason.to_string(),
            })
        });
    }

    /// The pull status of `reference`: a reference other than the last one
    /// starts afresh.
    fn update_pull(&self, shadow: bool, reference: &str, change: impl FnOnce(&mut PullStatus)) {
        let change = |pull: &mut Option<PullStatus>| {
            if pull.as_ref().is_none_or(|p| p.reference != reference) {
                *pull = Some(PullStatus {
                    reference: reference.to_string(),
                    ..PullStatus::default()
                });
            }
            change(pull.as_mut().expect("just set"));
        };
        if shadow {
            self.update_shadow(|s| change(&mut s.pull));
        } else {
            self.update(|s| change(&mut s.pull));
        }
    }

    /// The shadow answered a question, as the live policy did or not.
    pub fn shadow_answered(&self, agreed: bool) {
        self.update_shadow(|s| {
            s.answered += 1;
            s.disagreed += u64::from(!agreed);
        });
    }

    fn update_shadow(&self, change: impl FnOnce(&mut ShadowStatus)) {
        self.update(|s| change(s.shadow.get_or_insert_with(ShadowStatus::default)));
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
