//! The timeline: every event of the agent's life and of its drain — signals,
//! snapshots, decisions with their reasons, the app's exit — with timestamps.
//! Each entry is logged as it is recorded and kept in memory for `/status`
//! and for replay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use crate::policy::{Child, Decision, Next, ProbeValue, Snapshot, Trigger};
use crate::signals;

/// Entries kept; the oldest go first (a drain is far shorter than this).
const KEPT: usize = 2_000;

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Since the agent started.
    pub at_ms: u64,
    /// Since the drain began, during a drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<u32>,
    /// What kind of event: `started`, `signal`, `drain`, `decision`, …
    pub event: &'static str,
    /// The event in words.
    pub message: String,
    /// The event as data (a decision carries its snapshot).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// The timeline, shared between the controller (which writes) and the admin
/// server (which reads).
#[derive(Clone)]
pub struct Timeline {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    start: Instant,
    entries: VecDeque<Entry>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            inner: Arc::new(Mutex::new(Inner {
                start: Instant::now(),
                entries: VecDeque::new(),
            })),
        }
    }
}

impl Timeline {
    /// Records and logs an entry.
    pub fn record(&self, drain_ms: Option<u32>, event: &'static str, message: String, data: Value) {
        match drain_ms {
            Some(drain_ms) => tracing::info!(target: "lameduck", event, drain_ms, "{message}"),
            None => tracing::info!(target: "lameduck", event, "{message}"),
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let at_ms = inner.start.elapsed().as_millis() as u64;
        if inner.entries.len() == KEPT {
            inner.entries.pop_front();
        }
        inner.entries.push_back(Entry {
            at_ms,
            drain_ms,
            event,
            message,
            data,
        });
    }

    /// A copy of every entry kept.
    pub fn entries(&self) -> Vec<Entry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.iter().cloned().collect()
    }
}

/// A snapshot as data.
pub fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "trigger": match s.trigger {
            Trigger::None => "none".to_string(),
            Trigger::Signal(signal) => signals::name(signals::number(signal)),
            Trigger::Prestop => "prestop".to_string(),
        },
        "elapsed_ms": s.elapsed_ms,
        "remaining_ms": s.remaining_ms,
        "child": match s.child {
            Child::Running => json!("running"),
            Child::Exited(code) => json!({ "exited": code }),
            Child::Killed(signal) => json!({ "killed": signal }),
        },
        "signals_sent": s.signals_sent.iter().map(|sent| json!({
            "signal": signals::name(signals::number(sent.signal)),
            "at_ms": sent.at_ms,
        })).collect::<Vec<_>>(),
        "ready": s.ready,
        "probes": s.probes.iter().map(|p| json!({
            "name": p.name,
            "value": probe_json(&p.value),
            "unchanged_ms": p.unchanged_ms,
        })).collect::<Vec<_>>(),
    })
}

fn probe_json(value: &ProbeValue) -> Value {
    match value {
        ProbeValue::Connections(c) => json!({ "connections": {
            "established": c.established,
            "accepted": c.accepted,
            "since_last_accept_ms": c.since_last_accept_ms,
            "typical_gap_ms": c.typical_gap_ms,
        }}),
        ProbeValue::Http(r) => json!({ "http": { "status": r.status, "body": r.body } }),
        ProbeValue::File(f) => json!({ "file": { "exists": f.exists, "contents": f.contents } }),
        ProbeValue::Exec(code) => json!({ "exec": code }),
        ProbeValue::Failed(why) => json!({ "failed": why }),
    }
}

/// A decision as data.
pub fn decision_json(d: &Decision) -> Value {
    json!({
        "ready": d.ready,
        "signal": d.signal.map(|s| signals::name(signals::number(s))),
        "next": match d.next {
            Next::Recheck(ms) => json!({ "recheck_ms": ms }),
            Next::WaitForExit => json!("wait-for-exit"),
            Next::Exit => json!("exit"),
        },
        "reason": d.reason,
    })
}

/// A one-line summary of the probes, for the text log.
pub fn probes_summary(s: &Snapshot) -> String {
    s.probes
        .iter()
        .map(|p| {
            let value = match &p.value {
                ProbeValue::Connections(c) => format!(
                    "{} open, {} new, last new {}",
                    c.established,
                    c.accepted,
                    c.since_last_accept_ms
                        .map_or("never".to_string(), |ms| format!("{ms}ms ago"))
                ),
                ProbeValue::Http(r) => format!("HTTP {}", r.status),
                ProbeValue::File(f) => (if f.exists { "exists" } else { "absent" }).to_string(),
                ProbeValue::Exec(code) => format!("exit {code}"),
                ProbeValue::Failed(why) => format!("failed: {why}"),
            };
            format!("{}: {value}", p.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
