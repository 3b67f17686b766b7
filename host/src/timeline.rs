//! The timeline: every event of the agent's life and of its drain — signals,
//! snapshots, decisions with their reasons, the app's exit — with timestamps.
//! Each entry is logged as it is recorded and kept in memory for `/status`
//! and for replay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use crate::policy::{
    Child, Connections, Decision, FileState, HttpResponse, Next, Probe, ProbeValue, SentSignal,
    Signal, SignalAction, Snapshot, Trigger,
};
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

/// A decision in words: its reason and what it does.
pub fn describe_decision(d: &Decision) -> String {
    let mut text = d.reason.clone();
    if let Some(signal) = d.signal {
        text.push_str(&format!(" → {}", signals::name(signals::number(signal))));
    }
    match d.next {
        Next::Recheck(ms) => text.push_str(&format!(" (again in {ms}ms)")),
        Next::WaitForExit => text.push_str(" (waiting for the app to exit)"),
        Next::Exit => text.push_str(" (exit now)"),
    }
    text
}

/// What `on-signal` answered, in words.
pub fn describe_signal(signal: Signal, action: &SignalAction) -> String {
    let name = signals::name(signals::number(signal));
    match action {
        SignalAction::Forward => format!("{name} forwarded"),
        SignalAction::Rewrite(to) => {
            format!(
                "{name} forwarded as {}",
                signals::name(signals::number(*to))
            )
        }
        SignalAction::Ignore => format!("{name} ignored"),
        SignalAction::Drain => format!("{name} received"),
    }
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

/// The snapshot that [`snapshot_json`] wrote, read back (for replay); the
/// error names the field that is missing or wrong.
pub fn snapshot_from_json(v: &Value) -> Result<Snapshot, String> {
    let field = |key: &str| v.get(key).ok_or_else(|| format!("`{key}` is missing"));
    let ms = |key: &str| -> Result<u32, String> {
        field(key)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("`{key}` is not a number of milliseconds"))
    };
    let signal = |text: &str| {
        signals::parse(text)
            .and_then(signals::from_number)
            .ok_or_else(|| format!("`{text}` is not a signal a policy knows"))
    };
    let trigger = match field("trigger")?.as_str() {
        Some("none") => Trigger::None,
        Some("prestop") => Trigger::Prestop,
        Some(name) => Trigger::Signal(signal(name)?),
        None => return Err("`trigger` is not a string".into()),
    };
    let child = field("child")?;
    let code = |key: &str| {
        child[key]
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| format!("`child.{key}` is not a number"))
    };
    let child = if child == "running" {
        Child::Running
    } else if child.get("exited").is_some() {
        Child::Exited(code("exited")?)
    } else if child.get("killed").is_some() {
        Child::Killed(code("killed")?)
    } else {
        return Err(format!("`child` is {child}, not running, exited or killed"));
    };
    let mut signals_sent = Vec::new();
    for (i, sent) in array(field("signals_sent")?, "signals_sent")?
        .iter()
        .enumerate()
    {
        let name = sent["signal"].as_str();
        let at_ms = sent["at_ms"].as_u64().and_then(|n| u32::try_from(n).ok());
        let (Some(name), Some(at_ms)) = (name, at_ms) else {
            return Err(format!("`signals_sent[{i}]` needs `signal` and `at_ms`"));
        };
        signals_sent.push(SentSignal {
            signal: signal(name)?,
            at_ms,
        });
    }
    let mut probes = Vec::new();
    for (i, probe) in array(field("probes")?, "probes")?.iter().enumerate() {
        let value = probe_from_json(&probe["value"])
            .map_err(|field| format!("`probes[{i}].value.{field}` is missing or wrong"))?;
        let (Some(name), Some(unchanged_ms)) = (
            probe["name"].as_str(),
            probe["unchanged_ms"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok()),
        ) else {
            return Err(format!("`probes[{i}]` needs `name` and `unchanged_ms`"));
        };
        probes.push(Probe {
            name: name.to_string(),
            value,
            unchanged_ms,
        });
    }
    Ok(Snapshot {
        trigger,
        elapsed_ms: ms("elapsed_ms")?,
        remaining_ms: ms("remaining_ms")?,
        child,
        signals_sent,
        ready: field("ready")?
            .as_bool()
            .ok_or("`ready` is not true or false")?,
        probes,
    })
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("`{key}` is not a list"))
}

/// A probe value; the error is the field at fault.
fn probe_from_json(v: &Value) -> Result<ProbeValue, String> {
    let optional_ms = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let text = |v: &Value| v.as_str().map(str::to_string);
    let value = if let Some(c) = v.get("connections") {
        let count = |key: &str| optional_ms(&c[key]).ok_or(format!("connections.{key}"));
        ProbeValue::Connections(Connections {
            established: count("established")?,
            accepted: count("accepted")?,
            since_last_accept_ms: optional_ms(&c["since_last_accept_ms"]),
            typical_gap_ms: optional_ms(&c["typical_gap_ms"]),
        })
    } else if let Some(r) = v.get("http") {
        let status = r["status"].as_u64().and_then(|n| u16::try_from(n).ok());
        ProbeValue::Http(HttpResponse {
            status: status.ok_or("http.status")?,
            body: text(&r["body"]).ok_or("http.body")?,
        })
    } else if let Some(f) = v.get("file") {
        ProbeValue::File(FileState {
            exists: f["exists"].as_bool().ok_or("file.exists")?,
            contents: text(&f["contents"]).ok_or("file.contents")?,
        })
    } else if let Some(code) = v.get("exec") {
        let code = code.as_i64().and_then(|n| i32::try_from(n).ok());
        ProbeValue::Exec(code.ok_or("exec")?)
    } else if let Some(why) = v.get("failed") {
        ProbeValue::Failed(text(why).ok_or("failed")?)
    } else {
        return Err("connections|http|file|exec|failed".into());
    };
    Ok(value)
}
